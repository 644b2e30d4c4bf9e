#!/usr/bin/env python3
"""llama_ref.py - an independent reference of Hugging Face's LlamaForCausalLM.

Written from Hugging Face's transformers/models/llama/modeling_llama.py (the
modules below carry its class and attribute names, so the parameter names are
the Hugging Face ones and the safetensors file loads by name with strict
checks), in PyTorch, in float64 by default.  It shares no code with the C
engine and is not derived from it.

    llama_ref.py --model M.safetensors --config config.json --data FILE \
                 --seq-len T --batch B [--dtype float64|float32]
        prints what `swarmsim eval --grad-norms` prints:
            loss <value>
            grad_norm <hf-name> <value>      (one line per tensor in the file)

    llama_ref.py ... --compare OUT [--loss-tol 1e-4] [--grad-rtol 1e-3]
        also reads OUT (the output of `swarmsim eval --grad-norms`), prints
        the differences as "# ..." lines and exits 1 if any is beyond the
        tolerance or the tensor sets differ.

    llama_ref.py --self-test
        checks the pieces against hand computations (naive loops) and
        autograd against central finite differences, on a random tiny model.

    llama_ref.py --write-tokens OUT --vocab V --count N --seed S
        writes an llm.c token file (256 int32 header: magic 20240520,
        version 1, count; then uint16 tokens) of N pseudo-random tokens < V
        with some repetition in it (so that a model can learn something).

Data: an llm.c token file (first int32 = 20240520) or any other file whose
bytes are the tokens.  Window b is tokens[b*T : b*T+T], its targets
tokens[b*T+1 : b*T+T+1], for b in 0..B-1; the loss is the mean cross-entropy
over all B*T positions.

Needs only torch and numpy (no transformers, no safetensors package).
"""

import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LLMC_MAGIC = 20240520
LLMC_VERSION = 1
LLMC_HEADER_INTS = 256


# ---------------------------------------------------------------- file input

def read_safetensors(path):
    """{name: numpy array (float64)} from a safetensors file, in file order."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise ValueError("%s: header length %d beyond the file" % (path, hlen))
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen:]
    out = {}
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    entries.sort(key=lambda kv: kv[1]["data_offsets"][0])
    for name, e in entries:
        dtype, shape = e["dtype"], [int(s) for s in e["shape"]]
        b, end = (int(x) for x in e["data_offsets"])
        if not (0 <= b <= end <= len(data)):
            raise ValueError("%s: tensor %s: offsets [%d, %d) out of the data" % (path, name, b, end))
        raw = data[b:end]
        n = int(np.prod(shape)) if shape else 1
        if dtype == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dtype == "F64":
            a = np.frombuffer(raw, dtype="<f8").astype(np.float64)
        elif dtype == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dtype == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        else:
            raise ValueError("%s: tensor %s: dtype %s not supported" % (path, name, dtype))
        if a.size != n:
            raise ValueError("%s: tensor %s: %d values for shape %s" % (path, name, a.size, shape))
        out[name] = a.reshape(shape)
    return out


def read_tokens(path):
    """1-D int64 numpy array of the tokens of an llm.c token file or a text file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) >= 4 * LLMC_HEADER_INTS:
        head = np.frombuffer(blob[:4 * LLMC_HEADER_INTS], dtype="<i4")
        if head[0] == LLMC_MAGIC:
            if head[1] != LLMC_VERSION:
                raise ValueError("%s: llm.c token file version %d" % (path, head[1]))
            count = int(head[2])
            body = blob[4 * LLMC_HEADER_INTS:]
            if count < 0 or 2 * count > len(body):
                raise ValueError("%s: count %d beyond the file" % (path, count))
            return np.frombuffer(body[:2 * count], dtype="<u2").astype(np.int64)
    return np.frombuffer(blob, dtype=np.uint8).astype(np.int64)


def write_tokens(path, vocab, count, seed):
    rng = np.random.default_rng(seed)
    # a few random "words" repeated in random order, plus noise
    words = [rng.integers(0, vocab, size=rng.integers(2, 7)) for _ in range(24)]
    toks = []
    while len(toks) < count:
        if rng.random() < 0.85:
            toks.extend(int(t) for t in words[rng.integers(0, len(words))])
        else:
            toks.append(int(rng.integers(0, vocab)))
    toks = np.array(toks[:count], dtype="<u2")
    head = np.zeros(LLMC_HEADER_INTS, dtype="<i4")
    head[0], head[1], head[2] = LLMC_MAGIC, LLMC_VERSION, count
    with open(path, "wb") as f:
        f.write(head.tobytes())
        f.write(toks.tobytes())


class LlamaConfig:
    """The fields of a Hugging Face LlamaConfig that the model uses, with
    LlamaConfig's defaults for the optional ones."""

    def __init__(self, d):
        if d.get("model_type", "llama") != "llama":
            raise ValueError("model_type %r is not llama" % d.get("model_type"))
        self.vocab_size = int(d["vocab_size"])
        self.hidden_size = int(d["hidden_size"])
        self.intermediate_size = int(d["intermediate_size"])
        self.num_hidden_layers = int(d["num_hidden_layers"])
        self.num_attention_heads = int(d["num_attention_heads"])
        kv = d.get("num_key_value_heads")
        self.num_key_value_heads = int(kv) if kv is not None else self.num_attention_heads
        hd = d.get("head_dim")
        self.head_dim = int(hd) if hd is not None else self.hidden_size // self.num_attention_heads
        self.max_position_embeddings = int(d.get("max_position_embeddings", 2048))
        self.rms_norm_eps = float(d.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.tie_word_embeddings = bool(d.get("tie_word_embeddings", False))
        self.hidden_act = d.get("hidden_act", "silu")
        if self.hidden_act != "silu":
            raise ValueError("hidden_act %r not supported" % self.hidden_act)
        if d.get("rope_scaling") is not None:
            raise ValueError("rope_scaling not supported")
        if d.get("attention_bias", False) or d.get("mlp_bias", False):
            raise ValueError("biases not supported")


# ---------------------------------------------------------------- the model
# Class and attribute names are modeling_llama's.

class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        # HF upcasts to float32; here the working dtype is float32 or float64,
        # so computing in it is the upcast (or better).
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, base, dtype):
        super().__init__()
        # HF: inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        # (computed here in the working dtype)
        self.inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=dtype) / dim))

    def forward(self, position_ids):
        # position_ids [B, T] -> cos, sin [B, T, dim]
        freqs = position_ids[:, :, None].to(self.inv_freq.dtype) * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def rotate_half(x):
    """Rotates half the hidden dims of the input."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


def repeat_kv(hidden_states, n_rep):
    """[B, n_kv, T, hd] -> [B, n_kv * n_rep, T, hd]; head h reads kv head h // n_rep."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen,
                                                           head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class LlamaAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        h = config.hidden_size
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=False)

    def forward(self, hidden_states, position_embeddings, attention_mask):
        bsz, q_len, _ = hidden_states.shape
        hidden_shape = (bsz, q_len, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)

        # eager_attention_forward
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling
        attn_weights = attn_weights + attention_mask
        # HF: softmax(..., dtype=torch.float32).to(query_states.dtype): in float32
        # at least (in float64 here when the working dtype is float64)
        softmax_dtype = torch.float64 if query_states.dtype == torch.float64 else torch.float32
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=softmax_dtype)
        attn_weights = attn_weights.to(query_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(bsz, q_len, -1)
        return self.o_proj(attn_output)


class LlamaMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        h, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = LlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, attention_mask):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, position_embeddings, attention_mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


class LlamaModel(nn.Module):
    def __init__(self, config, dtype):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config)
                                    for _ in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config.head_dim, config.rope_theta, dtype)

    def forward(self, input_ids):
        bsz, seq_len = input_ids.shape
        inputs_embeds = self.embed_tokens(input_ids)
        position_ids = torch.arange(seq_len).unsqueeze(0).expand(bsz, seq_len)
        dtype = inputs_embeds.dtype
        # causal mask: 0 on and below the diagonal, the dtype's min above
        mask = torch.full((seq_len, seq_len), torch.finfo(dtype).min, dtype=dtype)
        mask = torch.triu(mask, diagonal=1)[None, None, :, :]
        position_embeddings = self.rotary_emb(position_ids)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, mask)
        return self.norm(hidden_states)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config, dtype):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config, dtype)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, targets):
        hidden_states = self.model(input_ids)
        logits = self.lm_head(hidden_states)  # HF: .float(); float64 stays float64 here
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               reduction="mean")


def build(config_path, model_path, dtype):
    with open(config_path) as f:
        cfg = LlamaConfig(json.load(f))
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg, dtype).to(dtype)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    tensors = read_safetensors(model_path) if model_path else None
    params = dict(model.named_parameters())
    if tensors is not None:
        want = set(params)
        have = set(tensors)
        if cfg.tie_word_embeddings and "lm_head.weight" in have:
            # a tied head may be stored too; then it must be the embedding
            have.discard("lm_head.weight")
            if not np.array_equal(tensors["lm_head.weight"],
                                  tensors.get("model.embed_tokens.weight")):
                raise ValueError("%s: tied lm_head.weight differs from the embedding" % model_path)
        if want != have:
            raise ValueError("%s: tensors missing %s, unexpected %s"
                             % (model_path, sorted(want - have), sorted(have - want)))
        with torch.no_grad():
            for name, p in params.items():
                a = tensors[name]
                if tuple(a.shape) != tuple(p.shape):
                    raise ValueError("%s: %s has shape %s, the config wants %s"
                                     % (model_path, name, list(a.shape), list(p.shape)))
                p.copy_(torch.from_numpy(a))
    return cfg, model


def windows(tokens, T, B):
    need = B * T + 1
    if len(tokens) < need:
        raise ValueError("%d tokens; %d windows of %d need %d" % (len(tokens), B, T, need))
    x = np.stack([tokens[b * T: b * T + T] for b in range(B)])
    y = np.stack([tokens[b * T + 1: b * T + T + 1] for b in range(B)])
    return torch.from_numpy(x), torch.from_numpy(y)


def evaluate(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = model(x, y)
    loss.backward()
    norms = {}
    for name, p in model.named_parameters():
        norms[name] = float(p.grad.double().norm())
    return float(loss), norms


# ---------------------------------------------------------------- comparison

def parse_output(path):
    loss, norms = None, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) == 2 and w[0] == "loss":
                loss = float(w[1])
            elif len(w) == 3 and w[0] == "grad_norm":
                if w[1] in norms:
                    raise ValueError("%s: grad_norm %s twice" % (path, w[1]))
                norms[w[1]] = float(w[2])
    if loss is None:
        raise ValueError("%s: no 'loss' line" % path)
    return loss, norms


def compare(ref_loss, ref_norms, path, loss_tol, grad_rtol):
    loss, norms = parse_output(path)
    ok = True
    dl = abs(loss - ref_loss)
    print("# loss: swarmsim %.7f reference %.10f |diff| %.3e (tol %.0e)"
          % (loss, ref_loss, dl, loss_tol))
    if not (dl <= loss_tol):
        ok = False
    missing, extra = sorted(set(ref_norms) - set(norms)), sorted(set(norms) - set(ref_norms))
    if missing or extra:
        print("# tensor sets differ: missing from swarmsim %s, extra in swarmsim %s"
              % (missing, extra))
        ok = False
    worst, worst_name, bad = 0.0, None, []
    for name, r in ref_norms.items():
        if name not in norms:
            continue
        s = norms[name]
        rel = abs(s - r) / abs(r) if r != 0 else (0.0 if s == 0 else math.inf)
        if not (rel <= grad_rtol):
            bad.append((rel, name, s, r))
        if not (rel <= worst):
            worst, worst_name = rel, name
    print("# grad norms: %d tensors, max relative diff %.3e (%s) (tol %.0e)"
          % (len(ref_norms), worst, worst_name, grad_rtol))
    for rel, name, s, r in sorted(bad, reverse=True):
        print("# BAD %s: swarmsim %.7e reference %.7e rel %.3e" % (name, s, r, rel))
        ok = False
    return ok


# ---------------------------------------------------------------- self-test

def _naive_forward(model, cfg, x, y):
    """The same model written out with explicit loops (hand computation)."""
    B, T = x.shape
    H, KV, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    sd = dict(model.named_parameters())
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    dt = sd["model.embed_tokens.weight"].dtype

    def rms(v, w):  # v [C]
        return v / math.sqrt(float((v * v).mean()) + cfg.rms_norm_eps) * w

    def rope(v, pos):  # v [hd]: element i pairs with i + hd/2
        out = v.clone()
        half = hd // 2
        for i in range(half):
            ang = pos * (1.0 / cfg.rope_theta ** (2.0 * i / hd))
            c, s = math.cos(ang), math.sin(ang)
            out[i] = v[i] * c - v[i + half] * s
            out[i + half] = v[i + half] * c + v[i] * s
        return out

    total = 0.0
    for b in range(B):
        h = [sd["model.embed_tokens.weight"][int(x[b, t])].clone() for t in range(T)]
        for li in range(cfg.num_hidden_layers):
            p = "model.layers.%d." % li
            ln = [rms(h[t], sd[p + "input_layernorm.weight"]) for t in range(T)]
            q = [sd[p + "self_attn.q_proj.weight"] @ ln[t] for t in range(T)]
            k = [sd[p + "self_attn.k_proj.weight"] @ ln[t] for t in range(T)]
            v = [sd[p + "self_attn.v_proj.weight"] @ ln[t] for t in range(T)]
            att = [torch.zeros(H * hd, dtype=dt) for _ in range(T)]
            for hh in range(H):
                g = hh // (H // KV)
                for t in range(T):
                    qt = rope(q[t][hh * hd:(hh + 1) * hd], t)
                    sc = [float(qt @ rope(k[u][g * hd:(g + 1) * hd], u)) / math.sqrt(hd)
                          for u in range(t + 1)]
                    m = max(sc)
                    e = [math.exp(s - m) for s in sc]
                    z = sum(e)
                    acc = torch.zeros(hd, dtype=dt)
                    for u in range(t + 1):
                        acc = acc + e[u] / z * v[u][g * hd:(g + 1) * hd]
                    att[t][hh * hd:(hh + 1) * hd] = acc
            h = [h[t] + sd[p + "self_attn.o_proj.weight"] @ att[t] for t in range(T)]
            for t in range(T):
                l2 = rms(h[t], sd[p + "post_attention_layernorm.weight"])
                gt = sd[p + "mlp.gate_proj.weight"] @ l2
                up = sd[p + "mlp.up_proj.weight"] @ l2
                h[t] = h[t] + sd[p + "mlp.down_proj.weight"] @ (gt / (1 + torch.exp(-gt)) * up)
        for t in range(T):
            logits = sd["lm_head.weight"] @ rms(h[t], sd["model.norm.weight"])
            m = float(logits.max())
            lse = m + math.log(float(torch.exp(logits - m).sum()))
            total += lse - float(logits[int(y[b, t])])
    return total / (B * T)


def self_test():
    torch.set_default_dtype(torch.float64)
    fails = 0
    for tied, H, KV in ((False, 4, 2), (True, 2, 2), (False, 4, 1)):
        cfg = LlamaConfig({"vocab_size": 11, "hidden_size": 16, "intermediate_size": 24,
                           "num_hidden_layers": 2, "num_attention_heads": H,
                           "num_key_value_heads": KV, "max_position_embeddings": 8,
                           "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                           "tie_word_embeddings": tied})
        torch.manual_seed(1 + H + KV + tied)
        model = LlamaForCausalLM(cfg, torch.float64).to(torch.float64)
        with torch.no_grad():
            for _, p in model.named_parameters():
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
        x = torch.randint(0, 11, (2, 6))
        y = torch.randint(0, 11, (2, 6))
        loss, _ = evaluate(model, x, y)
        with torch.no_grad():
            naive = _naive_forward(model, cfg, x, y)
        d = abs(loss - naive)
        ok = d < 1e-10
        fails += not ok
        print("%s: loss vs explicit loops (tied %s, heads %d/%d): %.12f %.12f diff %.1e"
              % ("ok" if ok else "FAIL", tied, H, KV, loss, naive, d))
        # autograd against central differences along a random direction, per tensor
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        worst = 0.0
        for n, p in model.named_parameters():
            dirn = torch.randn_like(p)
            eps = 1e-5
            with torch.no_grad():
                p.add_(eps * dirn)
                lp = float(model(x, y))
                p.sub_(2 * eps * dirn)
                lm = float(model(x, y))
                p.add_(eps * dirn)
            fd = (lp - lm) / (2 * eps)
            an = float((grads[n] * dirn).sum())
            worst = max(worst, abs(fd - an) / max(abs(an), 1.0))
        ok = worst < 1e-6
        fails += not ok
        print("%s: autograd vs finite differences: max rel %.1e" % ("ok" if ok else "FAIL", worst))
    # rotate_half pairing and repeat_kv mapping, by hand
    v = torch.arange(8.0)
    ok = rotate_half(v).tolist() == [-4.0, -5.0, -6.0, -7.0, 0.0, 1.0, 2.0, 3.0]
    kv = torch.arange(2.0).view(1, 2, 1, 1)
    ok = ok and repeat_kv(kv, 3).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    fails += not ok
    print("%s: rotate_half / repeat_kv by hand" % ("ok" if ok else "FAIL"))
    return 1 if fails else 0


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--config")
    ap.add_argument("--data")
    ap.add_argument("--seq-len", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--compare")
    ap.add_argument("--loss-tol", type=float, default=1e-4)
    ap.add_argument("--grad-rtol", type=float, default=1e-3)
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--write-tokens")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--count", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.self_test:
        return self_test()
    if a.write_tokens:
        write_tokens(a.write_tokens, a.vocab, a.count, a.seed)
        return 0
    if not (a.model and a.config and a.data):
        ap.error("--model, --config and --data are needed")
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    torch.set_default_dtype(dtype)
    cfg, model = build(a.config, a.model, dtype)
    T = a.seq_len or cfg.max_position_embeddings
    tokens = read_tokens(a.data)
    x, y = windows(tokens, T, a.batch)
    if int(x.max()) >= cfg.vocab_size or int(y.max()) >= cfg.vocab_size:
        raise ValueError("a token is beyond vocab_size %d" % cfg.vocab_size)
    loss, norms = evaluate(model, x, y)
    if a.compare:
        return 0 if compare(loss, norms, a.compare, a.loss_tol, a.grad_rtol) else 1
    print("loss %.10f" % loss)
    for name, n in norms.items():
        print("grad_norm %s %.10e" % (name, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
