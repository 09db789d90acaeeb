"""Fine-tuning a pretrained checkpoint for classification or regression (``recipes/finetune.py``).

``tasks`` describes the GLUE tasks, ``data`` loads and checks labelled data, ``fortunes`` builds the offline
default task, ``metrics`` computes GLUE metrics without the Hub, ``pretrained`` opens and checks the checkpoint,
``submission`` writes GLUE test predictions and ``config`` holds the recipe's flags.
"""
