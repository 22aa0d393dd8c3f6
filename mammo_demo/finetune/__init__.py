"""``mammo-demo finetune``: the transfer-learning paper's method (transfer learning and
fine-tuning from layer gamma) on source models nnlite trained itself, with benign vs malignant
mass ROIs of a CBIS-DDSM folder (phantom by default) as the target.

* :mod:`mammo_demo.finetune.data` - the target ROIs, split by patient, augmented after the split;
* :mod:`mammo_demo.finetune.run` - the configurations (scratch, TL, FT at each gamma), the table
  and the curves;
* :mod:`mammo_demo.finetune.cli` - ``add_parser(subparsers)`` for ``mammo-demo finetune``.

The mechanics (head replacement, gamma) are in :mod:`nnlite.transfer`.
"""
