"""The protein-to-text instruction model (`plmforge instruct`): a zoo encoder, a modality adapter and a
fragment Perceiver feeding a causal language model with LoRA, trained with the HuggingFace Trainer on
fragment tasks (referring_desc, referring_class, grounding_single, grounding_group, description).

- config.py: the run config (model, lora, data, training) and its mapping onto TrainingArguments;
- data.py: records, 0-based half-open positions, cropping, prompts with placeholders, the collator;
- model.py: adapters, the Perceiver, splicing, the stage-1 InfoNCE loss, generation;
- run.py: build, train (stages, resume), load, generate;
- scores.py: BLEU-2/4, ROUGE-L, class accuracy / macro-F1 / MCC, span IoU / precision / recall.
"""
