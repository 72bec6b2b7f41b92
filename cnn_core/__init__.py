"""cnn_core: the reference layers, gradient checkers, CNN arithmetic and architecture zoo.

The fast ops of `cnn_core.functional` are re-exported here; `cnn_core.naive` holds the same ops as
readable loops, `cnn_core.gradcheck` the gradient checkers, `cnn_core.arith` and `cnn_core.zoo` the
arithmetic of CNN layers and the classic architectures.
"""

from cnn_core.functional import *  # noqa: F403
from cnn_core.functional import __all__ as _functional_all

__all__ = list(_functional_all)
__version__ = "0.1.0"
