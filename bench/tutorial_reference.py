"""The PyTorch Chatbot Tutorial's own algorithm, re-implemented as the baseline the benchmarks measure against.

Faithful to the tutorial's computation, flaws included, so that timings compare like with like:
- time-major tensors (T, B); the batch is sorted by query length and the encoder runs on a packed sequence;
- a 2-layer bidirectional GRU encoder whose two directions are summed;
- Luong global attention with an unmasked softmax over all source positions (padding included);
- the decoder starts from `encoder_hidden[:decoder_layers]` (layer 0's two directions) and runs one time step per
  call, ending in a softmax; the loss is `-log(gather(softmax))` averaged over the non-pad tokens of each step and
  summed over the steps;
- two Adam optimizers (decoder lr x 5, both holding the shared embedding), each side clipped to norm 50 separately;
- a greedy decoder that always runs `max_length` steps and never stops at EOS.

It is not part of the package: only `bench/bench_train.py`, `bench/bench_chat.py` and the tests import it.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

PAD_ID, SOS_ID, EOS_ID = 0, 1, 2
MAX_LENGTH = 10


class TutorialEncoder(nn.Module):
    """Bidirectional GRU over a packed, length-sorted, time-major batch; the two directions' outputs are summed."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = embedding
        self.gru = nn.GRU(
            hidden_size, hidden_size, num_layers, dropout=0.0 if num_layers == 1 else dropout, bidirectional=True
        )

    def forward(self, input_seq: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.embedding(input_seq)  # (T, B, H)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths)
        outputs, hidden = self.gru(packed)  # hidden: (layers * 2, B, H)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs)  # (T, B, 2H)
        return outputs[:, :, : self.hidden_size] + outputs[:, :, self.hidden_size :], hidden  # (T, B, H)


class TutorialAttention(nn.Module):
    """Luong's dot, general and concat scores, softmax over all source positions (no padding mask, as there)."""

    def __init__(self, method: str, hidden_size: int):
        super().__init__()
        if method not in ("dot", "general", "concat"):
            raise ValueError(f"unknown attention method {method!r}; expected dot, general or concat")
        self.method = method
        if method == "general":
            self.attn = nn.Linear(hidden_size, hidden_size)
        elif method == "concat":
            self.attn = nn.Linear(2 * hidden_size, hidden_size)
            # Left uninitialized, as in the tutorial (a known bug); benchmarks use "dot".
            self.v = nn.Parameter(torch.empty(hidden_size))

    def forward(self, decoder_output: torch.Tensor, encoder_outputs: torch.Tensor) -> torch.Tensor:
        # decoder_output: (1, B, H); encoder_outputs: (S, B, H)
        if self.method == "dot":
            energies = (decoder_output * encoder_outputs).sum(dim=2)  # (S, B)
        elif self.method == "general":
            energies = (decoder_output * self.attn(encoder_outputs)).sum(dim=2)  # (S, B)
        else:
            expanded = decoder_output.expand(encoder_outputs.size(0), -1, -1)  # (S, B, H)
            energies = (self.v * self.attn(torch.cat((expanded, encoder_outputs), dim=2)).tanh()).sum(dim=2)
        return F.softmax(energies.t(), dim=1).unsqueeze(1)  # (B, 1, S)


class TutorialDecoder(nn.Module):
    """One decoding step: embedding, dropout, GRU, attention, concat layer, output layer, softmax."""

    def __init__(
        self, embedding: nn.Embedding, hidden_size: int, vocab_size: int, num_layers: int, dropout: float, method: str
    ):
        super().__init__()
        self.num_layers = num_layers
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers, dropout=0.0 if num_layers == 1 else dropout)
        self.concat = nn.Linear(2 * hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)
        self.attn = TutorialAttention(method, hidden_size)

    def forward(
        self, input_step: torch.Tensor, last_hidden: torch.Tensor, encoder_outputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.embedding_dropout(self.embedding(input_step))  # (1, B, H)
        rnn_output, hidden = self.gru(embedded, last_hidden)  # (1, B, H), (layers, B, H)
        return self.predict(self.attend(rnn_output, encoder_outputs)), hidden

    # attend and predict are methods so that the benchmark's profiler can time them as their own stages.
    def attend(self, rnn_output: torch.Tensor, encoder_outputs: torch.Tensor) -> torch.Tensor:
        """Luong's attentional state tanh(W[h; context]) for one step: (1, B, H), (S, B, H) -> (B, H)."""
        weights = self.attn(rnn_output, encoder_outputs)  # (B, 1, S)
        context = weights.bmm(encoder_outputs.transpose(0, 1)).squeeze(1)  # (B, H)
        return torch.tanh(self.concat(torch.cat((rnn_output.squeeze(0), context), dim=1)))  # (B, H)

    def predict(self, attentional: torch.Tensor) -> torch.Tensor:
        """Next-word probabilities (B, V): the output layer, then a softmax."""
        return F.softmax(self.out(attentional), dim=1)


class TutorialSeq2Seq(nn.Module):
    """The shared embedding, encoder and decoder, plus the tutorial's two optimizers."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 500,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        dropout: float = 0.1,
        attention_method: str = "dot",
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.encoder = TutorialEncoder(self.embedding, hidden_size, encoder_layers, dropout)
        self.decoder = TutorialDecoder(
            self.embedding, hidden_size, vocab_size, decoder_layers, dropout, attention_method
        )

    def optimizers(
        self, learning_rate: float = 1e-4, decoder_learning_ratio: float = 5.0
    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        # Both parameter lists include the shared embedding, so it gets two Adam updates a step, as in the tutorial.
        return (
            torch.optim.Adam(self.encoder.parameters(), lr=learning_rate),
            torch.optim.Adam(self.decoder.parameters(), lr=learning_rate * decoder_learning_ratio),
        )


def make_batch(pairs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor | int]:
    """Time-major padded tensors from (query ids, response ids) pairs, both already ending in EOS.

    Returns `input_seq` (S, B), `lengths` (B,), `target` (T, B), `mask` (T, B) bool and `max_target_len`, with the
    batch sorted by query length, longest first, as packing requires.
    """
    pairs = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)
    queries = [torch.tensor(query) for query, _ in pairs]
    responses = [torch.tensor(response) for _, response in pairs]
    target = nn.utils.rnn.pad_sequence(responses, padding_value=PAD_ID)  # (T, B)
    return {
        "input_seq": nn.utils.rnn.pad_sequence(queries, padding_value=PAD_ID),  # (S, B)
        "lengths": torch.tensor([len(query) for query in queries]),
        "target": target,
        "mask": target.ne(PAD_ID),
        "max_target_len": target.size(0),
    }


def masked_nll(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The tutorial's step loss: mean of -log p(target) over the non-pad rows, from probabilities (B, V)."""
    nll = -torch.log(torch.gather(probs, 1, target.view(-1, 1)).squeeze(1))  # (B,)
    return nll.masked_select(mask).mean()


def train_step(
    model: TutorialSeq2Seq,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    batch: dict[str, torch.Tensor | int],
    clip: float = 50.0,
    teacher_forcing_ratio: float = 1.0,
) -> float:
    """One tutorial training iteration; returns the token-weighted mean loss of the batch."""
    for optimizer in optimizers:
        optimizer.zero_grad()
    target, mask = batch["target"], batch["mask"]
    batch_size = target.size(1)
    encoder_outputs, encoder_hidden = model.encoder(batch["input_seq"], batch["lengths"])
    decoder_input = torch.full((1, batch_size), SOS_ID, dtype=torch.long, device=target.device)
    decoder_hidden = encoder_hidden[: model.decoder.num_layers]  # layer 0's two directions: the tutorial's flaw
    teacher_forcing = random.random() < teacher_forcing_ratio
    loss, weighted_sum, n_tokens = 0.0, 0.0, 0
    for t in range(batch["max_target_len"]):
        probs, decoder_hidden = model.decoder(decoder_input, decoder_hidden, encoder_outputs)
        # Teacher forcing feeds the target token; otherwise the decoder's own greedy choice.
        decoder_input = target[t].view(1, -1) if teacher_forcing else probs.topk(1)[1].view(1, -1)
        step_loss = masked_nll(probs, target[t], mask[t])
        step_tokens = int(mask[t].sum())
        loss = loss + step_loss
        weighted_sum += step_loss.item() * step_tokens
        n_tokens += step_tokens
    loss.backward()
    nn.utils.clip_grad_norm_(model.encoder.parameters(), clip)
    nn.utils.clip_grad_norm_(model.decoder.parameters(), clip)
    for optimizer in optimizers:
        optimizer.step()
    return weighted_sum / n_tokens


@torch.inference_mode()
def greedy_decode(model: TutorialSeq2Seq, query_ids: list[int], max_length: int = MAX_LENGTH) -> list[int]:
    """The tutorial's greedy search for one query: always `max_length` decoder steps, EOS or not."""
    input_seq = torch.tensor(query_ids).view(-1, 1)  # (S, 1)
    encoder_outputs, encoder_hidden = model.encoder(input_seq, torch.tensor([len(query_ids)]))
    decoder_hidden = encoder_hidden[: model.decoder.num_layers]
    decoder_input = torch.full((1, 1), SOS_ID, dtype=torch.long)
    tokens = torch.zeros(0, dtype=torch.long)
    scores = torch.zeros(0)
    for _ in range(max_length):
        probs, decoder_hidden = model.decoder(decoder_input, decoder_hidden, encoder_outputs)
        score, decoder_input = torch.max(probs, dim=1)
        tokens = torch.cat((tokens, decoder_input), dim=0)
        scores = torch.cat((scores, score), dim=0)
        decoder_input = decoder_input.unsqueeze(0)
    return tokens.tolist()


def reply_text(token_ids: list[int], id_to_word: dict[int, str]) -> str:
    """The reply as the tutorial prints it: every decoded word except EOS and PAD, even words after an EOS."""
    return " ".join(id_to_word.get(token_id, "<unk>") for token_id in token_ids if token_id not in (EOS_ID, PAD_ID))
