"""Reference backend: slow, obviously correct NumPy forward and backward (the test oracle).

Plain per-time-step NumPy in PyTorch's (B, features) layout, in the parameters' dtype.
One step of each cell, with a_i = x W_ih^T + b_ih and a_h = h W_hh^T + b_hh (both (B, G*H)):

    rnn:   h' = act(a_i + a_h)                act = tanh, relu or sigmoid
    lstm:  i, f, g, o = row blocks of a_i + a_h (G = 4, in that order)
           i, f, o = sigmoid(.), g = tanh(.)
           c' = f * c + i * g,   h' = o * tanh(c')
    gru:   r = sigmoid(a_i[r] + a_h[r]),  z = sigmoid(a_i[z] + a_h[z])     (G = 3: r, z, n)
           n = tanh(a_i[n] + r * a_h[n])
           h' = (1 - z) * n + z * h

Without bias the b terms are absent (here: zero vectors, which add exactly nothing).

Layers and directions: layer 0 reads x (T, B, I); layer k > 0 reads the (T, B, D*H)
output of layer k - 1, [forward | reverse] on the feature axis. The forward direction runs
t = 0..T-1 from h0[k*D], the reverse one t = T-1..0 from h0[k*D + 1]; the hidden state
made at time t is out[t, :, d*H:(d+1)*H]. The last state each direction makes is
h_n[k*D + d] (and c_n for lstm).

lengths (B,) (PyTorch's packed semantics): sequence b takes part in step t only if
t < lengths[b]; otherwise its state is carried unchanged and its output is zero. So the
reverse direction starts at each sequence's own last step, and h_n is each sequence's state
after its own last step. Backward masks the same way: a padded step passes dh (dc) through
unchanged and contributes no gradient.

Backward walks the same steps in the opposite order. Each cell's backward step turns
dh' (and dc') into the gradients of the two pre-activations, da_i and da_h, plus the
part of dh that does not go through W_hh (gru: z * dh'); then, for every cell,

    dW_ih += da_i^T x     db_ih += sum_B da_i     dx = da_i W_ih
    dW_hh += da_h^T h     db_hh += sum_B da_h     dh = da_h W_hh (+ direct part)

Derivatives come from saved outputs: dsigmoid = y (1 - y), dtanh = 1 - y^2, drelu = y > 0.
"""

import numpy as np

from rnnfast.params import Spec


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # Written in exp(-|a|) so that it never overflows: 1/(1+e) for a >= 0, e/(1+e) below.
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0)


# activation and its derivative written in the activation's output y
_ACT = {
    "tanh": (np.tanh, lambda y: 1 - y * y),
    "relu": (_relu, lambda y: (y > 0).astype(y.dtype)),
    "sigmoid": (_sigmoid, lambda y: y * (1 - y)),
}


# ---------------------------------------------------------------------------------------
# One time step of each cell, forward and backward side by side.
# Forward: (a_i, a_h, h, c) -> (h', c', saved). Backward: (saved, h, c, dh', dc') ->
# (da_i, da_h, dh_direct, dc). h, c, dh', dc' are (B, H); a_i, a_h, da_i, da_h (B, G*H).
# ---------------------------------------------------------------------------------------


def _rnn_forward(act, a_i, a_h, h, c):
    y = _ACT[act][0](a_i + a_h)
    return y, None, {"y": y}


def _rnn_backward(act, s, h, c, dh_next, dc_next):
    da = dh_next * _ACT[act][1](s["y"])
    return da, da, None, None


def _lstm_forward(act, a_i, a_h, h, c):
    H = h.shape[1]
    a = a_i + a_h
    i = _sigmoid(a[:, 0 * H : 1 * H])
    f = _sigmoid(a[:, 1 * H : 2 * H])
    g = np.tanh(a[:, 2 * H : 3 * H])
    o = _sigmoid(a[:, 3 * H : 4 * H])
    c_next = f * c + i * g
    tc = np.tanh(c_next)
    return o * tc, c_next, {"i": i, "f": f, "g": g, "o": o, "tc": tc}


def _lstm_backward(act, s, h, c, dh_next, dc_next):
    i, f, g, o, tc = s["i"], s["f"], s["g"], s["o"], s["tc"]
    dc_total = dc_next + dh_next * o * (1 - tc * tc)  # dc' from the next step and from h'
    da = np.concatenate(
        [
            dc_total * g * i * (1 - i),  # di
            dc_total * c * f * (1 - f),  # df
            dc_total * i * (1 - g * g),  # dg
            dh_next * tc * o * (1 - o),  # do
        ],
        axis=1,
    )
    return da, da, None, dc_total * f


def _gru_forward(act, a_i, a_h, h, c):
    H = h.shape[1]
    r = _sigmoid(a_i[:, 0 * H : 1 * H] + a_h[:, 0 * H : 1 * H])
    z = _sigmoid(a_i[:, 1 * H : 2 * H] + a_h[:, 1 * H : 2 * H])
    hn = a_h[:, 2 * H : 3 * H]  # W_hn h + b_hn, needed for dr
    n = np.tanh(a_i[:, 2 * H : 3 * H] + r * hn)
    return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n, "hn": hn}


def _gru_backward(act, s, h, c, dh_next, dc_next):
    r, z, n, hn = s["r"], s["z"], s["n"], s["hn"]
    dan = dh_next * (1 - z) * (1 - n * n)  # through n = tanh(.)
    dar = dan * hn * r * (1 - r)
    daz = dh_next * (h - n) * z * (1 - z)
    da_i = np.concatenate([dar, daz, dan], axis=1)
    da_h = np.concatenate([dar, daz, dan * r], axis=1)
    return da_i, da_h, dh_next * z, None


_CELLS = {
    "rnn": (_rnn_forward, _rnn_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


# ---------------------------------------------------------------------------------------
# Layers and directions
# ---------------------------------------------------------------------------------------


def _keys(layer: int, direction: int) -> dict[str, str]:
    sfx = "_reverse" if direction else ""
    return {n: f"{n}_l{layer}{sfx}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def _weights(spec: Spec, params: dict, layer: int, direction: int):
    k = _keys(layer, direction)
    w_ih, w_hh = params[k["weight_ih"]], params[k["weight_hh"]]
    if spec.bias:
        return w_ih, w_hh, params[k["bias_ih"]], params[k["bias_hh"]]
    zero = np.zeros(w_ih.shape[0], spec.dtype)
    return w_ih, w_hh, zero, zero


def _time_order(T: int, direction: int) -> range:
    return range(T - 1, -1, -1) if direction else range(T)


def _masks(lengths, T: int, B: int) -> list:
    """masks[t] (B, 1) bool: which sequences take part in step t (None: all of them)."""
    if lengths is None:
        return [None] * T
    return [(t < lengths)[:, None] for t in range(T)]


def forward(spec: Spec, nonlinearity: str, params: dict, x: np.ndarray, h0, c0,
            lengths=None, batch_first: bool = False):  # fmt: skip
    """out (T, B, D*H) (batch_first: (B, T, D*H)), h_n (L*D, B, H), c_n (lstm) or None,
    data for backward."""
    step = _CELLS[spec.cell][0]
    if batch_first:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape
    masks = _masks(lengths, T, B)
    D, H = spec.directions, spec.hidden_size
    h_n = np.empty_like(h0)
    c_n = np.empty_like(c0) if spec.cell == "lstm" else None
    data = []  # per layer: (layer input, per direction: per time step (h, c, saved))
    inp = x
    for layer in range(spec.num_layers):
        out = np.empty((T, B, D * H), spec.dtype)
        layer_steps = []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = _weights(spec, params, layer, d)
            h = h0[layer * D + d]
            c = c0[layer * D + d] if c_n is not None else None
            steps = [None] * T  # steps[t]: the state before step t and what it saved
            for t in _time_order(T, d):
                a_i = inp[t] @ w_ih.T + b_ih
                a_h = h @ w_hh.T + b_hh
                h_new, c_new, saved = step(nonlinearity, a_i, a_h, h, c)
                steps[t] = (h, c, saved)
                m = masks[t]
                if m is None:
                    h, c = h_new, c_new
                    out[t, :, d * H : (d + 1) * H] = h
                else:  # padded sequences keep their state and output zero
                    h = np.where(m, h_new, h)
                    c = np.where(m, c_new, c) if c is not None else None
                    out[t, :, d * H : (d + 1) * H] = np.where(m, h, 0)
            h_n[layer * D + d] = h
            if c_n is not None:
                c_n[layer * D + d] = c
            layer_steps.append(steps)
        data.append((inp, layer_steps))
        inp = out
    data = (data, masks, batch_first)
    return (inp.transpose(1, 0, 2).copy() if batch_first else inp), h_n, c_n, data


def backward(spec: Spec, nonlinearity: str, params: dict, data, dout, dh_n, dc_n) -> dict:
    """Gradients of sum(out * dout) + sum(h_n * dh_n) (+ sum(c_n * dc_n)) for every input."""
    step_back = _CELLS[spec.cell][1]
    D, H = spec.directions, spec.hidden_size
    grads = {key: np.zeros_like(value) for key, value in params.items()}
    dh0 = np.empty_like(dh_n)
    dc0 = np.empty_like(dc_n) if spec.cell == "lstm" else None
    data, masks, batch_first = data
    dlayer_out = dout.transpose(1, 0, 2) if batch_first else dout  # (T, B, D*H): gradient of
    #                                                     the current layer's output
    for layer in reversed(range(spec.num_layers)):
        inp, layer_steps = data[layer]
        T = inp.shape[0]
        dinp = np.zeros_like(inp)
        for d in range(D):
            k = _keys(layer, d)
            w_ih, w_hh, _, _ = _weights(spec, params, layer, d)
            dh = dh_n[layer * D + d].copy()  # gradient of the state after the current step
            dc = dc_n[layer * D + d].copy() if dc0 is not None else None
            for t in reversed(_time_order(T, d)):
                h, c, saved = layer_steps[d][t]
                m = masks[t]
                dstep = dlayer_out[t, :, d * H : (d + 1) * H]
                dh = dh + (dstep if m is None else np.where(m, dstep, 0))
                da_i, da_h, dh_direct, dc_new = step_back(nonlinearity, saved, h, c, dh, dc)
                dh_carry, dc_carry = dh, dc
                if m is not None:  # a padded step: no gradient, dh and dc pass through
                    da_i, da_h = np.where(m, da_i, 0), np.where(m, da_h, 0)
                grads[k["weight_ih"]] += da_i.T @ inp[t]
                grads[k["weight_hh"]] += da_h.T @ h
                if spec.bias:
                    grads[k["bias_ih"]] += da_i.sum(axis=0)
                    grads[k["bias_hh"]] += da_h.sum(axis=0)
                dinp[t] += da_i @ w_ih
                dh = da_h @ w_hh
                if dh_direct is not None:
                    dh = dh + dh_direct
                dc = dc_new
                if m is not None:
                    dh = np.where(m, dh, dh_carry)
                    dc = np.where(m, dc_new, dc_carry) if dc is not None else None
            dh0[layer * D + d] = dh
            if dc0 is not None:
                dc0[layer * D + d] = dc
        dlayer_out = dinp
    grads["x"] = dlayer_out.transpose(1, 0, 2).copy() if batch_first else dlayer_out
    grads["h0"] = dh0
    if dc0 is not None:
        grads["c0"] = dc0
    return grads
