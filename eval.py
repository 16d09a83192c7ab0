#!/usr/bin/env python
"""Evaluate learned and classical image codecs; BD-rate, AUC, RD plots. See docs/EVALUATION.md.

    python eval.py --model bmshj2018-hyperprior --checkpoint runs/hp-q{q} --quality 1 2 3 --dataset kodak --out hp.json
    python eval.py --codec jpeg --dataset kodak --out jpeg.json
    python eval.py bd jpeg hp.json
    python eval.py plot hp.json --anchor jpeg --anchor bpg444 --out rd.png
    python eval.py --checkpoint TODERICI_DIR --dataset kodak --out tod.json   # progressive: one point per iteration
    python eval.py auc-report --model tod.json --jpeg jpeg.json --out-dir DIR  # Toderici AUC table + RD plot
    python eval.py restoration --comcnn DIR       # JPEG / +ARCNN / +ARCNN-ASPP / ComCNN RD (docs/RESTORATION.md)
"""

import sys

from lic_jax.evaluation.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["restoration"]:
        from lic_jax.restoration.rd import main as restoration_main

        sys.exit(restoration_main(sys.argv[2:]))
    sys.exit(main())
