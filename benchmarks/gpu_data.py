"""Write the DATA_DIR that benchmarks/gpu_suite.sh reads, here, before a GPU lease (the GPU machine has no `bible`
program and may lack gensim): the KJV Bible + Python docs text of the CPU benchmarks, and gensim's word-vector test
sets.

    echo /.gpu/ >> .git/info/exclude && python benchmarks/gpu_data.py .gpu    # then carry ".gpu" in the device call
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu")
    out.mkdir(parents=True, exist_ok=True)
    text = bible_corpus().read_text(encoding="utf-8") + python_docs_corpus().read_text(encoding="utf-8")
    (out / "kjv_docs.txt").write_text(text, encoding="utf-8")
    import gensim  # the analogy and similarity sets ship with its tests

    test_data = Path(gensim.__file__).parent / "test" / "test_data"
    for name in ("questions-words.txt", "wordsim353.tsv", "simlex999.txt"):
        shutil.copy(test_data / name, out / name)
    print(f"{out}: {', '.join(f'{p.name} {p.stat().st_size / 2**20:.1f} MB' for p in sorted(out.iterdir()))}")


if __name__ == "__main__":
    main()
