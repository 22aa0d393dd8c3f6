"""nnlite: an educational neural-network framework with explicit backprop.

Every layer is a small class with a ``forward`` and a ``backward`` you can
read next to the math in its docstring.  Arrays are NCHW, float32 by default,
on NumPy (CPU) or CuPy (GPU); :mod:`nnlite.backend` decides which.

    >>> import nnlite as nn
    >>> model = nn.zoo.mias_cnn(num_classes=3)
    >>> model.summary((1, 48, 48))          # doctest: +SKIP
"""
from .backend import Generator, get_array_module, gpu_available, to_numpy
from .parameter import Buffer, Parameter
from .layer import Layer
from .sequential import Sequential
from .containers import Add, Concatenate, Identity, Residual
from .gradcheck import gradcheck, gradcheck_loss, assert_gradcheck, relative_error

from .conv import Conv2D
from .conv_transpose import ConvTranspose2D
from .padding import ZeroPad2D
from .dense import Dense, Flatten
from .pooling import MaxPool2D, AvgPool2D, GlobalAvgPool2D
from .activations import ReLU, LeakyReLU, Tanh, Sigmoid, Softmax
from .dropout import Dropout
from .lrn import LocalResponseNorm
from .batchnorm import BatchNorm1D, BatchNorm2D
from .unpool import MaxUnpool2D, Upsample2D

from .losses import Loss, SoftmaxCrossEntropy, BinaryCrossEntropy, MSE
from .mask_losses import PixelBCE, SoftDice, BCEDice
from .optim import Optimizer, SGD, RMSProp, Adam, LRSchedule, StepDecay, ExponentialDecay
from .regularizers import Regularizer, L1, L2, L1L2
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, HistoryLogger
from .training import History, fit, evaluate, predict, predict_proba
from .serialization import (save, load, load_weights, read_metadata, save_checkpoint,
                            load_checkpoint)

from . import initializers, metrics, regularizers, transfer, zoo
from . import functional   # the plain reference functions (im2col, pooling, updates, softmax)

from .version import __version__

__all__ = [
    "Generator", "get_array_module", "gpu_available", "to_numpy",
    "Parameter", "Buffer", "Layer", "Sequential", "Residual", "Add", "Concatenate", "Identity",
    "gradcheck", "gradcheck_loss", "assert_gradcheck", "relative_error",
    "Conv2D", "ConvTranspose2D", "ZeroPad2D", "Dense", "Flatten",
    "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
    "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Dropout", "LocalResponseNorm",
    "BatchNorm1D", "BatchNorm2D", "MaxUnpool2D", "Upsample2D",
    "Loss", "SoftmaxCrossEntropy", "BinaryCrossEntropy", "MSE",
    "PixelBCE", "SoftDice", "BCEDice",
    "Optimizer", "SGD", "RMSProp", "Adam", "LRSchedule", "StepDecay", "ExponentialDecay",
    "Regularizer", "L1", "L2", "L1L2",
    "Callback", "EarlyStopping", "ModelCheckpoint", "HistoryLogger",
    "History", "fit", "evaluate", "predict", "predict_proba",
    "save", "load", "load_weights", "read_metadata", "save_checkpoint", "load_checkpoint",
    "initializers", "metrics", "regularizers", "transfer", "zoo",
    "functional",
]
