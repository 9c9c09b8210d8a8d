"""qinfer.convert: Mistral raw and Hugging Face checkpoints to GGUF.

Installed as the subpackage `qinfer.convert` (setup.py package_dir).
"""
