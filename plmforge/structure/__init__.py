"""Structure as a model input: PDB/mmCIF files -> per-residue structure tokens (Foldseek 3Di, DSSP
secondary structure), one row per protein chain, or added to a dataset's rows.

- reader.py: chains from a file (gemmi), with the rules that keep residues and Foldseek's 3Di in step;
- tokens.py: 3Di (mini3di) and secondary structure (mkdssp, or the pydssp fallback);
- build.py: many files in parallel, with a report of everything left out (`plmforge structure PATH...`);
- dataset.py: the exact id-to-file rule for `plmforge structure --dataset`.
"""
