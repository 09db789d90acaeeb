"""Self-supervised image encoders: SimCLR, BYOL, MoCo v3, VICReg and Barlow Twins on transformers backbones.

The recipe ``recipes/contrastive.py`` tells the training story; this package holds the parts it is built from:
one loss per module (each cites its paper), the projection/prediction heads, the batched on-device view
augmentations, image data loading that skips corrupt files, and kNN / linear-probe evaluation.
"""
