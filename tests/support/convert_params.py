"""The converter's view of a raw checkpoint's hyperparameters, for recipe tests."""
from qinfer.convert.model_params import from_mistral
from qinfer.convert.sources import open_checkpoint


def params_of(src):
    ck = open_checkpoint(src)
    p = from_mistral(ck.json("params.json"), ck.label)
    p.tied = "output.weight" not in ck.tensors()
    return p
