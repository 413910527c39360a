"""PTM-Mamba: a bidirectional Mamba language model over protein sequences in which modified residues are
written as PTM tokens (`<Phosphoserine>`, ...).

- tokens.py: the PTM-aware tokenizer and the site-table helper;
- mamba.py: the Mamba block (pure-PyTorch selective scan; mamba-ssm kernels on GPU when installed) and the
  bidirectional model;
- train.py: config, splits, PTM-aware masking, the accelerate training loop, metrics and checkpoints.
"""
