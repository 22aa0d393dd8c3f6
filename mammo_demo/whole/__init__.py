"""The thesis' whole-mammogram pipeline: DICOM films -> preprocessed 224x224 inputs.

* :func:`preprocess` (:mod:`mammo_demo.whole.preprocess`): the naive and the
  crop method, with the fixes that make the crop work on scanned films.
* :mod:`mammo_demo.whole.phantom`: phantom films written as DICOM files in the
  CBIS-DDSM layout with its four CSVs (the offline default).
* :mod:`mammo_demo.whole.preview`: the stage figure (thesis Figure 5.2).
* :mod:`mammo_demo.whole.cli`: ``mammo-demo whole synth | preview``.

Readers live beside it: :mod:`mammo_demo.dicom` and :mod:`mammo_demo.cbis`.
"""
from .preprocess import PreprocessRecord, preprocess

__all__ = ["preprocess", "PreprocessRecord"]
