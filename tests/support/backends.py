"""Which compute backends the tests can run here."""
from qinfer import kernels


def available():
    return [b for b in kernels.BACKENDS if kernels.status()[b]["available"]]
