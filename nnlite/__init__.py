"""nnlite: an educational neural-network framework with explicit backprop."""
from .backend import Generator, get_array_module, gpu_available
from .parameter import Parameter
from .layer import Layer
from .sequential import Sequential
from .gradcheck import gradcheck, gradcheck_loss, assert_gradcheck

__version__ = "0.1.0"
