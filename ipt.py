"""
Intrinsic Prompt Tuning (IPT): the model pieces, in the paper's order. No data, no training loop.

Paper: Qin et al., "Exploring Low-dimensional Intrinsic Task Subspace via Prompt Tuning",
arXiv:2110.07867. Sections follow that version: §3.1 Preliminaries (prompt tuning), §3.2 IPT,
which is MSF (multi-task subspace finding) and then IST (intrinsic subspace tuning). Its display
equations carry no numbers, so each piece here names the one it implements:

  Eq. PT       min_{θ_P} L_LM(M([P; E(X)]), Y), θ_M frozen      -> prepend_prompt, token_losses,
                                                                    per_task_mean, multitask_objective
  Eq. MSF-rec  P̂ = Proj_b(Proj(P))                              -> PromptAutoencoder
  Eq. MSF      min_{θ_proj} L_LM(P̂) + α·‖P̂ − P‖²               -> ReconstructedPrompts, msf_objective
  Eq. IST      min_z L_LM(Proj_b(z)), Proj_b and θ_M frozen      -> IntrinsicPrompts

Shapes: B batch rows, T input tokens, L target tokens, V vocabulary, P prompt length,
H d_model, K tasks, d_I intrinsic dimension, d'_I hidden size of Proj_b, S = longest x;y.

The paper prompt-tunes an encoder-decoder (T5 here, BART in the authors' code): the prompt is
prepended to the encoder's input. A decoder-only PLM (Llama, Qwen, GPT-2, …) gets it before the
input and the target, [P; E(x); E(y)], with the loss on y only; `token_losses` and `generate`
pick the path from `plm.config.is_encoder_decoder`, and everything after them is the same.

The frozen PLM is always an argument, never a submodule. Every prompt module keeps one
Parameter per task, so a task that has finished gets grad None and Adam leaves it alone, and
the rows of one batch may belong to different tasks (the prompt is gathered per row).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = -100  # label value for padding; HF and F.cross_entropy skip it


def freeze(plm: nn.Module) -> nn.Module:
    """Freeze the pretrained model θ_M: no parameter trains, dropout off. Returns it for chaining."""
    plm.requires_grad_(False)
    plm.eval()
    trainable = [n for n, p in plm.named_parameters() if p.requires_grad]
    assert not trainable, f"frozen PLM still has trainable parameters: {trainable[:5]}"
    return plm


# -----------------------------------------------------------------------------
# §3.1 Prompt tuning: n trainable vectors prepended to the frozen input embeddings (Eq. PT)

def prepend_prompt(prompt, embeds, mask):
    """prompt [P, H] (shared) or [B, P, H] (one per row), embeds [B, T, H], mask [B, T]
    -> [B, P+T, H], [B, P+T]. Encoder side only, as Lester et al., PEFT and the authors do."""
    B = embeds.size(0)
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(B, -1, -1)                 # (B, P, H)
    prompt = prompt.to(embeds.dtype)
    ones = mask.new_ones(B, prompt.size(1))                            # prompt is always attended
    return torch.cat([prompt, embeds], 1), torch.cat([ones, mask], 1)


def encode(t5, prompt, input_ids, attention_mask):
    """Run the frozen encoder on [prompt; E(X)]. prompt None or P = 0 is plain T5."""
    embeds = t5.get_input_embeddings()(input_ids)                      # (B, T, H)
    if prompt is not None:
        embeds, attention_mask = prepend_prompt(prompt, embeds, attention_mask)
    hidden = t5.get_encoder()(inputs_embeds=embeds, attention_mask=attention_mask)
    return hidden, attention_mask                                      # (B, P+T, H), (B, P+T)


def token_losses(plm, prompt, input_ids, attention_mask, labels, label_smoothing=0.0):
    """Per-token cross-entropy of the targets, [B, L], 0 where labels == IGNORE (Eq. PT).
    Encoder-decoder: the decoder is untouched, it reads the usual right-shifted labels."""
    if not plm.config.is_encoder_decoder:
        return target_losses(causal_target_logits(plm, prompt, input_ids, attention_mask, labels), labels,
                             label_smoothing)
    encoder_outputs, mask = encode(plm, prompt, input_ids, attention_mask)
    return decoder_losses(plm, encoder_outputs.last_hidden_state, mask, labels, label_smoothing)


def decoder_losses(t5, hidden, mask, labels, label_smoothing=0.0):
    """The decoder's part of token_losses, given the encoder's states hidden [B, S, H] and their
    mask [B, S] (rank classification scores several targets of one encoded row) -> [B, L]."""
    decoder_input_ids = t5.prepare_decoder_input_ids_from_labels(labels=labels)
    logits = t5(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=decoder_input_ids).logits  # (B, L, V)
    return target_losses(logits, labels, label_smoothing)


def target_losses(logits, labels, label_smoothing=0.0):
    """Cross-entropy of each target token: logits [B, L, V], labels [B, L] -> [B, L], 0 at IGNORE."""
    return F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE,
                           reduction="none", label_smoothing=label_smoothing)


def per_task_mean(losses, labels, task_idx, num_tasks, count=None):
    """Token-mean loss of each task over its rows: losses, labels [B, L], task_idx [B] -> [K].
    Tasks without rows in the batch get 0 (they contribute no gradient). count [K]: each task's
    target tokens in the whole step when these rows are a part of it (one forward pass, one
    rank's share): the parts' results then add up to the whole step's."""
    tokens = (labels != IGNORE).float()                                # (B, L)
    total = losses.new_zeros(num_tasks).index_add(0, task_idx, (losses * tokens).sum(1))
    if count is None:
        count = tokens.new_zeros(num_tasks).index_add(0, task_idx, tokens.sum(1))
    return total / count.clamp(min=1)                                  # (K,)


def multitask_objective(task_lm):
    """Eq. PT for K tasks trained at once: Σ_k L_LM(task k). Each task owns its prompt, so each
    gets the gradient it would get alone. task_lm [K] (per_task_mean) -> scalar."""
    return task_lm.sum()


@torch.no_grad()
def generate(plm, prompt, input_ids, attention_mask, max_new_tokens=32, num_beams=1):
    """Decode with the prompt prepended; greedy by default (the authors used 4 beams).
    Returns the generated ids (a decoder-only PLM: the new tokens only)."""
    if not plm.config.is_encoder_decoder:
        embeds, mask = left_align(*prepend_prompt_causal(plm, prompt, input_ids, attention_mask))
        return plm.generate(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask),
                            do_sample=False, max_new_tokens=max_new_tokens, num_beams=num_beams)
    encoder_outputs, mask = encode(plm, prompt, input_ids, attention_mask)
    return plm.generate(encoder_outputs=encoder_outputs, attention_mask=mask, do_sample=False,
                        max_new_tokens=max_new_tokens, num_beams=num_beams)


# The same on a decoder-only PLM. Rows are right-padded for training ([P; x; y; pad]: a row's
# pads come after everything it attends to) and left-padded for generation ([pad; P; x], so that
# every row's next token is at the end); positions count a row's own tokens only. Either way a
# row's result does not depend on its batch-mates.

def positions(mask):
    """Position ids that skip padding: 0 at a row's first attended token. mask [B, S] -> [B, S]"""
    return (mask.cumsum(1) - 1).clamp(min=0)


def prepend_prompt_causal(plm, prompt, input_ids, attention_mask):
    """[P; E(x)] and its mask, right-padded. -> (B, P+T, H), (B, P+T)"""
    embeds = plm.get_input_embeddings()(input_ids)                     # (B, T, H)
    if prompt is None:
        return embeds, attention_mask
    return prepend_prompt(prompt, embeds, attention_mask)


def join_targets(input_ids, attention_mask, labels, pad_id=0):
    """Each row's x followed by its y, right-padded: -> ids (B, S), mask (B, S), lengths of x (B,)."""
    lx, ly = attention_mask.sum(1), (labels != IGNORE).sum(1)          # (B,), (B,)
    pos = torch.arange(int((lx + ly).max()), device=labels.device)[None]   # (1, S)
    in_x, in_y = pos < lx[:, None], (pos >= lx[:, None]) & (pos < (lx + ly)[:, None])
    x = input_ids.gather(1, pos.clamp(max=input_ids.size(1) - 1).expand(len(lx), -1))
    y = labels.clamp(min=0).gather(1, (pos - lx[:, None]).clamp(0, labels.size(1) - 1))
    ids = torch.where(in_x, x, torch.where(in_y, y, torch.full_like(x, pad_id)))
    return ids, (in_x | in_y).long(), lx


def causal_target_logits(plm, prompt, input_ids, attention_mask, labels):
    """Logits that predict each target token of [P; x; y]: (B, L, V). The LM head runs on those
    positions only (a real vocabulary makes logits for every position the largest tensor)."""
    ids, mask, lx = join_targets(input_ids, attention_mask, labels)
    embeds, mask = prepend_prompt_causal(plm, prompt, ids, mask)
    hidden = plm.base_model(inputs_embeds=embeds, attention_mask=mask,
                            position_ids=positions(mask)).last_hidden_state     # (B, P+S, H)
    P = embeds.size(1) - ids.size(1)
    before = P + lx[:, None] - 1 + torch.arange(labels.size(1), device=labels.device)[None]  # (B, L)
    before = before.clamp(max=hidden.size(1) - 1)                      # IGNORE columns: any position
    picked = hidden.gather(1, before[..., None].expand(-1, -1, hidden.size(-1)))           # (B, L, H)
    return plm.get_output_embeddings()(picked)                         # (B, L, V)


def left_align(embeds, mask):
    """Move each row's padding from the end to the front. (B, S, H), (B, S) -> the same shapes."""
    S = mask.size(1)
    shift = (S - mask.sum(1))[:, None]                                 # pads of each row, (B, 1)
    src = (torch.arange(S, device=mask.device)[None] - shift)          # where position j comes from
    keep = src >= 0
    src = src.clamp(min=0)
    embeds = embeds.gather(1, src[..., None].expand(-1, -1, embeds.size(-1))) * keep[..., None]
    return embeds, mask.gather(1, src) * keep


# Prompt initialisations. The authors draw N(0, 0.02²) (their code says sampled vocabulary did
# worse); Lester et al. prefer class labels, then sampled vocabulary from the 5,000 most frequent
# pieces. The rows of a SentencePiece vocabulary are sorted by frequency, so "first 5,000".

def init_normal(P, H, generator, std=0.02):
    return torch.randn(P, H, generator=generator) * std               # (P, H)


def init_sampled_vocab(embedding, P, generator, population=5000):
    """P rows of the first `population` rows of the embedding table, without replacement when possible."""
    n = min(population, embedding.size(0))
    if P <= n:
        rows = torch.randperm(n, generator=generator)[:P]
    else:
        rows = torch.randint(n, (P,), generator=generator)
    return embedding[rows].detach().clone()                            # (P, H)


def init_class_labels(embedding, label_token_ids, P, generator):
    """Lester's class-label init: row i is the mean embedding of label i's pieces,
    the remaining rows sampled vocabulary. label_token_ids: one list of ids per label."""
    rows = [embedding[ids].mean(0) for ids in label_token_ids[:P]]
    if len(rows) < P:
        rows += list(init_sampled_vocab(embedding, P - len(rows), generator))
    return torch.stack(rows).detach().clone()                          # (P, H)


def gather_per_row(make, task_idx):
    """Build the prompt of each distinct task once, then index it per row.
    make: LongTensor [U] of task ids -> [U, P, H]; task_idx [B] -> [B, P, H]."""
    tasks, row_to_task = task_idx.unique(return_inverse=True)
    return make(tasks)[row_to_task]


class SoftPrompts(nn.Module):
    """§3.1 / Eq. PT: one free P×H soft prompt per task."""

    def __init__(self, init):                                          # init (K, P, H)
        super().__init__()
        self.prompts = nn.ParameterList(nn.Parameter(p.clone()) for p in init)

    def forward(self, task_idx):                                       # (B,) -> (B, P, H)
        return gather_per_row(lambda ts: torch.stack([self.prompts[t] for t in ts.tolist()]), task_idx)


# -----------------------------------------------------------------------------
# §3.2 MSF: an autoencoder over the trained prompts defines the intrinsic subspace (Eq. MSF-rec)

class PromptAutoencoder(nn.Module):
    """Proj: one linear layer P·H -> d_I. Proj_b: d_I -> d'_I, tanh, d'_I -> P·H (the paper's
    two-layer perceptron; the authors hard-code d'_I = 768, the H of BART-base, so we default to H)."""

    def __init__(self, prompt_len, d_model, intrinsic_dim, hidden_dim=None):
        super().__init__()
        self.P, self.H = prompt_len, d_model
        hidden_dim = hidden_dim or d_model
        self.proj = nn.Linear(prompt_len * d_model, intrinsic_dim)
        self.proj_b = nn.Sequential(nn.Linear(intrinsic_dim, hidden_dim), nn.Tanh(),
                                    nn.Linear(hidden_dim, prompt_len * d_model))

    def encode(self, prompts):                                         # (K, P, H) -> (K, d_I)
        return self.proj(prompts.flatten(1))

    def decode(self, z):                                               # (K, d_I) -> (K, P, H)
        return self.proj_b(z).view(-1, self.P, self.H)

    def forward(self, prompts):                                        # P̂ = Proj_b(Proj(P))
        return self.decode(self.encode(prompts))


class ReconstructedPrompts(nn.Module):
    """MSF's prompt for task k is the reconstruction of its PT prompt; only the autoencoder trains."""

    def __init__(self, autoencoder, pt_prompts):                       # pt_prompts (K, P, H)
        super().__init__()
        self.autoencoder = autoencoder
        self.register_buffer("pt_prompts", pt_prompts.detach().clone(), persistent=False)

    def forward(self, task_idx):                                       # (B,) -> (B, P, H)
        return gather_per_row(lambda ts: self.autoencoder(self.pt_prompts[ts]), task_idx)

    def reconstruction_error(self, tasks):                             # mean ‖P̂ − P‖² per element
        target = self.pt_prompts[tasks]
        return F.mse_loss(self.autoencoder(target), target)


def msf_objective(task_lm, reconstruction_error, alpha):
    """Eq. MSF: L_LM of the reconstructed prompts + α · reconstruction error.
    Our L_LM is the mean over tasks of each task's token-mean cross-entropy, and the error an
    element mean. The authors sum label-smoothed cross-entropy over every target token of a
    64-row batch (a few hundred tokens) and use α = 200; dividing their loss by that token count
    gives our form with α ≈ 200 / tokens-per-batch, about 1 for short CrossFit targets.
    task_lm [K]: every task's, as MSF trains them all together. Linear in task_lm, so a step in parts
    (per_task_mean's count) sums to the whole step's when the error is added in one part only."""
    return task_lm.mean() + alpha * reconstruction_error


# -----------------------------------------------------------------------------
# §3.2 IST: keep only Proj_b, frozen; a task is d_I free numbers z (Eq. IST)

class IntrinsicPrompts(nn.Module):
    """prompt_k = Proj_b(z_k). Only z trains: K · d_I numbers in all.
    With an untrained autoencoder this is the paper's random-subspace baseline."""

    def __init__(self, autoencoder, z_init):                           # z_init (K, d_I)
        super().__init__()
        self.autoencoder = freeze(autoencoder)                         # Proj_b (and unused Proj) frozen
        self.z = nn.ParameterList(nn.Parameter(z.clone()) for z in z_init)

    def forward(self, task_idx):                                       # (B,) -> (B, P, H)
        return gather_per_row(lambda ts: self.autoencoder.decode(torch.stack([self.z[t] for t in ts.tolist()])),
                       task_idx)


def init_z(kind, num_tasks, intrinsic_dim, generator, codes=None):
    """IST start points: 'normal' the authors' N(0, 0.02²), 'zeros', or 'mean' of the training
    tasks' codes Proj(P_train) (codes [K_train, d_I]) -> (K, d_I)."""
    if kind == "normal":
        return torch.randn(num_tasks, intrinsic_dim, generator=generator) * 0.02
    if kind == "zeros":
        return torch.zeros(num_tasks, intrinsic_dim)
    if kind == "mean":
        if codes is None:
            raise ValueError("init 'mean' needs the training tasks' codes Proj(P_train)")
        return codes.detach().mean(0, keepdim=True).expand(num_tasks, -1).clone()
    raise ValueError(f"unknown z init {kind!r}: choose normal, zeros or mean")
