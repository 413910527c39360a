"""The protein-to-text model: a sequence encoder from the zoo (frozen by default) -> a modality adapter
(MLP into the decoder's hidden size) -> a causal language model with LoRA. Residue states are spliced
into the decoder's input at protein placeholders (one per residue); a fragment adapter (a Perceiver
resampler over the referenced fragment's residues) yields latent tokens spliced at fragment
placeholders. Every step is a masked batch operation; nothing assumes CUDA."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ModalityAdapter(nn.Module):
    def __init__(self, encoder_hidden: int, hidden: int, decoder_hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(encoder_hidden), nn.Linear(encoder_hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, decoder_hidden))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_latents, self.norm_states, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, latents: torch.Tensor, states: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        kv = self.norm_states(states)
        latents = latents + self.attention(self.norm_latents(latents), kv, kv, key_padding_mask=ignore,
                                           need_weights=False)[0]
        return latents + self.ff(self.norm_ff(latents))


class FragmentPerceiver(nn.Module):
    """Learned latents that cross-attend to the residues of one fragment per sequence: (B, L, D) states
    and a (B, L) fragment mask -> (B, K, D) latent tokens."""

    def __init__(self, dim: int, latents: int, layers: int, heads: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, dim) * dim ** -0.5)
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, states: torch.Tensor, fragment: torch.Tensor) -> torch.Tensor:
        ignore = ~fragment
        ignore[:, 0] &= fragment.any(1)  # rows without a fragment: their latents are never used
        x = self.latents.to(states.dtype).expand(states.shape[0], -1, -1)
        for layer in self.layers:
            x = layer(x, states, ignore)
        return self.norm(x)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class ProteinTextModel(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, adapter: ModalityAdapter,
                 perceiver: FragmentPerceiver, protein_token_id: int, fragment_token_id: int,
                 train_encoder: bool = False) -> None:
        super().__init__()
        self.encoder, self.decoder, self.adapter, self.perceiver = encoder, decoder, adapter, perceiver
        self.protein_token_id, self.fragment_token_id = protein_token_id, fragment_token_id
        self.train_encoder = train_encoder
        if not train_encoder:
            for p in encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ProteinTextModel:
        super().train(mode)
        if not self.train_encoder:
            self.encoder.eval()
        return self

    def protein_states(self, protein_ids: torch.Tensor, protein_mask: torch.Tensor) -> torch.Tensor:
        """Adapter outputs (B, L, D_decoder) for every encoder token."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            states = self.encoder(input_ids=protein_ids, attention_mask=protein_mask).last_hidden_state
        return self.adapter(states.to(next(self.adapter.parameters()).dtype))

    def embed(self, input_ids: torch.Tensor, protein_ids: torch.Tensor, protein_mask: torch.Tensor,
              residue_mask: torch.Tensor, fragment_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's input embeddings with residue states and fragment latents spliced in."""
        emb = self.decoder.get_input_embeddings()(input_ids)
        states = self.protein_states(protein_ids, protein_mask)
        slots = input_ids == self.protein_token_id
        if not torch.equal(slots.sum(1), residue_mask.sum(1)):
            raise ValueError(f"protein placeholders per row {slots.sum(1).tolist()} differ from residues per row "
                             f"{residue_mask.sum(1).tolist()}")
        emb = emb.masked_scatter(slots.unsqueeze(-1), states[residue_mask].to(emb.dtype))
        frag_slots = input_ids == self.fragment_token_id
        if frag_slots.any():
            has = fragment_mask.any(1)
            latents = self.perceiver(states, fragment_mask)  # (B, K, D)
            if not torch.equal(frag_slots.sum(1), has.long() * latents.shape[1]):
                raise ValueError("fragment placeholders do not match the rows that reference a fragment")
            emb = emb.masked_scatter(frag_slots.unsqueeze(-1), latents[has].to(emb.dtype))
        return emb

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, protein_ids: torch.Tensor,
                protein_mask: torch.Tensor, residue_mask: torch.Tensor, fragment_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> Any:
        emb = self.embed(input_ids, protein_ids, protein_mask, residue_mask, fragment_mask)
        return self.decoder(inputs_embeds=emb, attention_mask=attention_mask, labels=labels)

    def align_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, protein_ids: torch.Tensor,
                   protein_mask: torch.Tensor, residue_mask: torch.Tensor, labels: torch.Tensor,
                   temperature: float, **_: Any) -> torch.Tensor:
        """Stage 1 (InfoNCE): pooled adapter outputs against the frozen decoder's pooled hidden states of
        each protein's own answer text; the other proteins of the batch are the negatives."""
        protein = masked_mean(self.protein_states(protein_ids, protein_mask), residue_mask)
        answer = labels != -100
        with torch.no_grad(), self._plain_decoder():
            hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask,
                                  output_hidden_states=True).hidden_states[-1]
        text = masked_mean(hidden.to(protein.dtype), answer)
        logits = F.normalize(protein, dim=-1) @ F.normalize(text, dim=-1).T / temperature
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    @contextlib.contextmanager
    def _plain_decoder(self):  # type: ignore[no-untyped-def]
        """The decoder without its LoRA layers (stage 1 aligns to the base model). peft marks the adapter
        trainable again when it re-enables it; what trains is restored as it was."""
        disable = getattr(self.decoder, "disable_adapter", None)
        flags = {n: p.requires_grad for n, p in self.decoder.named_parameters()}
        with disable() if disable is not None else contextlib.nullcontext():
            yield
        for n, p in self.decoder.named_parameters():
            p.requires_grad_(flags[n])

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, protein_ids: torch.Tensor,
                 protein_mask: torch.Tensor, residue_mask: torch.Tensor, fragment_mask: torch.Tensor,
                 **kwargs: Any) -> torch.Tensor:
        """New tokens only (prompts left-padded)."""
        emb = self.embed(input_ids, protein_ids, protein_mask, residue_mask, fragment_mask)
        return self.decoder.generate(inputs_embeds=emb, attention_mask=attention_mask, **kwargs)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}
