"""A GRU for CPU training over packed sequences: `nn.GRU`'s parameters and results, fewer passes over memory.

Per layer and direction, the input projections of all real tokens are one matrix product; each time step is one
`(B_t, H) x (H, 3H)` product over the rows still running (a packed batch keeps them a prefix); the backward runs the
recurrence only for the state gradient and gets the weight, bias and input gradients as one matrix product each over
all tokens. Shapes use N (real tokens in the batch), B (batch), B_t (rows running at step t), I (input size) and
H (hidden size).
"""

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def _step_bounds(batch_sizes: list[int], reverse: bool) -> list[tuple[int, int]]:
    """(first row, row count) of every time step's slice of the packed data, in the order the direction runs them."""
    bounds, start = [], 0
    for size in batch_sizes:
        bounds.append((start, size))
        start += size
    return bounds[::-1] if reverse else bounds


class _GruDirection(torch.autograd.Function):
    """One GRU direction over packed data, from precomputed input projections; gate order r, z, n as in `nn.GRU`."""

    @staticmethod
    def forward(ctx, input_gates, initial_state, weight_hh, bias_hh, batch_sizes: list[int], reverse: bool):
        """
        Args:
            input_gates (`torch.FloatTensor` of shape `(N, 3H)`): `x @ W_ih^T + b_ih` of every packed token.
            initial_state (`torch.FloatTensor` of shape `(B, H)`): the state before the first step, in packed order.
            weight_hh (`torch.FloatTensor` of shape `(3H, H)`), bias_hh (`torch.FloatTensor` of shape `(3H,)`).
            batch_sizes (`list[int]`): rows of every time step (non-increasing), as in `PackedSequence`.
            reverse (`bool`): run the steps from last to first (the backward direction).

        Returns:
            `tuple(torch.FloatTensor)`: the outputs `(N, H)` and the final state `(B, H)`.
        """
        hidden = input_gates.shape[1] // 3
        state = initial_state.clone()  # (B, H): rows past their last step keep their final state
        outputs = input_gates.new_empty(input_gates.shape[0], hidden)  # (N, H)
        previous = torch.empty_like(outputs)  # (N, H) the state each token's step started from
        hidden_gates = torch.empty_like(input_gates)  # (N, 3H): r, z after the sigmoid, W_hn h + b_hn
        candidates = torch.empty_like(outputs)  # (N, H): n
        weight_hh_t = weight_hh.t()
        for start, rows in _step_bounds(batch_sizes, reverse):
            end = start + rows
            h_prev = previous[start:end].copy_(state[:rows])  # (B_t, H)
            gates = torch.addmm(bias_hh, h_prev, weight_hh_t, out=hidden_gates[start:end])  # (B_t, 3H)
            reset_update = gates[:, : 2 * hidden].add_(input_gates[start:end, : 2 * hidden]).sigmoid_()
            reset, update = reset_update[:, :hidden], reset_update[:, hidden:]
            n = torch.addcmul(
                input_gates[start:end, 2 * hidden :], reset, gates[:, 2 * hidden :], out=candidates[start:end]
            ).tanh_()
            # h' = (1 - z) * n + z * h, one pass
            state[:rows] = torch.lerp(n, h_prev, update, out=outputs[start:end])
        ctx.save_for_backward(weight_hh, previous, hidden_gates, candidates)
        ctx.batch_sizes, ctx.reverse = batch_sizes, reverse
        return outputs, state

    @staticmethod
    def backward(ctx, grad_outputs, grad_state):
        weight_hh, previous, hidden_gates, candidates = ctx.saved_tensors
        hidden = weight_hh.shape[1]
        gate_factors, candidate_factor, update = _gate_derivatives(previous, hidden_gates, candidates)
        grad_state = grad_state.clone()  # (B, H): the gradient flowing into each row's current state
        grad_outputs_all = torch.empty_like(previous)  # (N, H): dL/dh' of every step, recurrence included
        grad_hidden_gates = torch.empty_like(hidden_gates)  # (N, 3H): d(W_hh h + b_hh), gates r, z, n
        # Only the state gradient's recurrence runs step by step, from the last step run back to the first.
        for start, rows in reversed(_step_bounds(ctx.batch_sizes, ctx.reverse)):
            end = start + rows
            grad_h = torch.add(grad_state[:rows], grad_outputs[start:end], out=grad_outputs_all[start:end])
            grad_gates = torch.mul(
                grad_h[:, None, :],
                gate_factors[start:end].view(rows, 3, hidden),
                out=grad_hidden_gates[start:end].view(rows, 3, hidden),
            ).view(rows, 3 * hidden)  # (B_t, 3H)
            torch.addmm(grad_h * update[start:end], grad_gates, weight_hh, out=grad_state[:rows])  # (B_t, H)
        grad_candidate_pre = grad_outputs_all.mul_(candidate_factor)  # (N, H): d(W_in x + b_in)
        grad_input_gates = torch.cat([grad_hidden_gates[:, : 2 * hidden], grad_candidate_pre], dim=1)  # (N, 3H)
        grad_weight_hh = grad_hidden_gates.t() @ previous  # (3H, H), one product over all tokens
        grad_bias_hh = grad_hidden_gates.sum(dim=0)  # (3H,)
        return grad_input_gates, grad_state, grad_weight_hh, grad_bias_hh, None, None


def _gate_derivatives(
    previous: torch.Tensor, hidden_gates: torch.Tensor, candidates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    The factors that turn dL/dh' into the gates' gradients, for all tokens at once (outside the step loop).

    With h' = (1 - z) n + z h and n = tanh(a_n), a_n = W_in x + b_in + r (W_hn h + b_hn):
    d(a_n) = dh' (1 - z)(1 - n^2); d(W_hr h + b_hr) = d(a_n) (W_hn h + b_hn) r (1 - r);
    d(W_hz h + b_hz) = dh' (h - n) z (1 - z); d(W_hn h + b_hn) = d(a_n) r.

    Returns:
        `tuple(torch.FloatTensor)`: the r, z, n factors `(N, 3H)`, the d(a_n) factor `(N, H)` and z `(N, H)`.
    """
    reset, update, hidden_n = hidden_gates.chunk(3, dim=1)  # (N, H) each
    candidate_factor = (1 - update) * (1 - candidates * candidates)  # (N, H)
    gate_factors = torch.cat(
        [
            candidate_factor * hidden_n * reset * (1 - reset),
            (previous - candidates) * update * (1 - update),
            candidate_factor * reset,
        ],
        dim=1,
    )  # (N, 3H)
    return gate_factors, candidate_factor, update


class PackedGru(nn.GRU):
    """
    `nn.GRU` (batch-first) that runs packed sequences on the CPU with [`_GruDirection`]; otherwise `nn.GRU` itself.

    Same parameters (`weight_ih_l0`, `weight_hh_l0_reverse`, ...), gate order and results as `nn.GRU`, so checkpoints
    load unchanged. The packed path serves CPU training (gradients on, fp32 or fp64, no autocast), where it is faster
    than `nn.GRU` (`bench/bench_train.py` measures it). Everywhere else `nn.GRU`'s own kernels run: on CUDA (cuDNN),
    under autocast, without gradients (evaluation, `generate()`: measured faster there) and for unpacked inputs.

    Example:

    ```python
    >>> import torch
    >>> from modeling_seq2seq.packed_gru import PackedGru

    >>> gru = PackedGru(8, 8, num_layers=2, bidirectional=True, batch_first=True)
    >>> packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(3, 5, 8), [5, 2, 4], True, False)
    >>> outputs, final = gru(packed)
    >>> outputs.data.shape, final.shape
    (torch.Size([11, 16]), torch.Size([4, 3, 8]))

    ```
    """

    def uses_packed_path(self, inputs: torch.Tensor | PackedSequence) -> bool:
        """Whether `forward(inputs)` runs the packed implementation rather than `nn.GRU`'s kernels."""
        return (
            isinstance(inputs, PackedSequence)
            and self.bias
            and inputs.data.device.type == "cpu"
            and inputs.data.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu")
            and torch.is_grad_enabled()
        )

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
        if not self.uses_packed_path(input):
            return super().forward(input, hx)
        data, batch_sizes, sorted_indices, unsorted_indices = input
        steps = batch_sizes.tolist()
        directions = 2 if self.bidirectional else 1
        if hx is None:
            hx = data.new_zeros(self.num_layers * directions, steps[0], self.hidden_size)
        elif sorted_indices is not None:
            hx = hx.index_select(1, sorted_indices)  # (L * D, B, H) in packed (length-sorted) order
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                data = nn.functional.dropout(data, self.dropout, training=True)
            outputs = []
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                input_gates = nn.functional.linear(
                    data, getattr(self, "weight_ih" + suffix), getattr(self, "bias_ih" + suffix)
                )  # (N, 3H): every token's input projection in one product
                output, final = _GruDirection.apply(
                    input_gates,
                    hx[layer * directions + direction],
                    getattr(self, "weight_hh" + suffix),
                    getattr(self, "bias_hh" + suffix),
                    steps,
                    direction == 1,
                )
                outputs.append(output)
                finals.append(final)
            data = outputs[0] if directions == 1 else torch.cat(outputs, dim=1)  # (N, D * H)
        final_state = torch.stack(finals)  # (L * D, B, H)
        if unsorted_indices is not None:
            final_state = final_state.index_select(1, unsorted_indices)
        return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices), final_state
