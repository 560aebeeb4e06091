"""Image data sets for the VAEs, as float32 tensors with fixed train / validation / test splits.

Data sets, by the name :func:`load_dataset` takes (see :data:`DATASETS`):

``"digits"``
    1797 8x8 grey images of handwritten digits 0-9, bundled with scikit-learn
    (``sklearn.datasets.load_digits``): a copy of the test set of the UCI "Optical
    Recognition of Handwritten Digits" data (optdigits; E. Alpaydin and C. Kaynak, 1998).
    Needs no files. A fixed 20 % (360 images) is held out as the test split.
``"mnist"``
    MNIST, 28x28 grey handwritten digits, 60000 training and 10000 test images
    (Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to
    document recognition", Proc. IEEE, 1998).
``"fashion-mnist"``
    Fashion-MNIST, 28x28 grey images of Zalando articles in 10 classes, laid out like MNIST
    (H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a novel image dataset for
    benchmarking machine learning algorithms", arXiv:1708.07747, 2017).
``"binarized-mnist"``
    The fixed binarization of MNIST with official 50000 / 10000 / 10000 train / valid / test
    splits and no labels (H. Larochelle and I. Murray, "The neural autoregressive
    distribution estimator", AISTATS 2011).

The MNIST-family files are not shipped: they are looked for in ``root/<name>/`` and then
``root/``, where ``root`` is the ``root=`` argument or else the ``PPVAE_DATA`` environment
variable. MNIST and Fashion-MNIST are the four IDX files (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``,
or the same uncompressed); torchvision's ``MNIST/raw`` and ``FashionMNIST/raw`` folders
work too. Binarized MNIST is ``binarized_mnist_{train,valid,test}.npz`` (one uint8 array
``x`` = ``np.packbits`` of the 0/1 rows) or the original ``.amat`` text files. Gzipped
and ``.npz`` files are checked against the md5 sums of the official releases.

Example::

    from ppvae.data import load_dataset

    data = load_dataset("mnist", seed=0, binarize="dynamic")
    data.train.x.shape  # (54000, 784), grey; val and test are fixed binary sets
"""

from .datasets import DATASETS, DataOptions, Dataset, Split, binarize, load_dataset
from .errors import DataError, MissingDataError
from .quadrants import HIDDEN, QUADRANT_COUNTS, hidden_pixels, mask_quadrants, quadrant_mask
from .splits import LabelSplit, label_split

__all__ = [
    "DATASETS",
    "DataOptions",
    "HIDDEN",
    "QUADRANT_COUNTS",
    "DataError",
    "Dataset",
    "LabelSplit",
    "MissingDataError",
    "Split",
    "binarize",
    "hidden_pixels",
    "label_split",
    "load_dataset",
    "mask_quadrants",
    "quadrant_mask",
]
