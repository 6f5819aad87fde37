"""Private speed kernels of the DropClass head and loss (fused 1x1 convolutions, one-pass loss): each has a
reference path in ``head``/``loss`` that it must match (float64 tests); nothing outside ``dropclass`` imports them
except the networks' plain classifier."""
