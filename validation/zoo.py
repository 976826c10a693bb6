"""A zoo of models people train, written for this repository, for ``symflop estimate``.

Each factory builds a small model with random weights (nothing is downloaded):
``transformers`` models from tiny configurations, and ``torch.nn`` models of common
shapes.  ``ZOO`` gives, per name, the factory (``validation.zoo:NAME`` on the command
line), the input as ``--input`` takes it, the input dtype and the sizes of a real step.
A transformers model is wrapped so that it takes one tensor and returns its logits (or
its last hidden state): ``estimate`` traces ``model(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch import nn


class _Logits(nn.Module):
    """A transformers model called on token ids (or pixels), returning its first output."""

    def __init__(self, model: nn.Module, key: str = "input_ids", decoder: bool = False):
        super().__init__()
        self.model = model
        self.key = key
        self.decoder = decoder

    def forward(self, x):
        extra = {"decoder_input_ids": x} if self.decoder else {}
        out = self.model(**{self.key: x}, **extra)
        return out.logits if getattr(out, "logits", None) is not None else out[0]


def _tiny(**kw) -> dict:
    base = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=128)
    base.update(kw)
    return base


def llama() -> nn.Module:
    """A decoder LM: grouped-query attention (4 heads, 2 key-value heads), RoPE, RMSNorm,
    SwiGLU, causal fused attention."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(**_tiny(num_key_value_heads=2), attn_implementation="sdpa")
    return _Logits(LlamaForCausalLM(cfg))


def gpt2() -> nn.Module:
    """A GPT-2-style LM: learned positions, LayerNorm, GELU (tanh), causal attention."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=256, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                     attn_implementation="sdpa")
    return _Logits(GPT2LMHeadModel(cfg))


def bert() -> nn.Module:
    """An encoder: BERT with its masked-LM head."""
    from transformers import BertConfig, BertForMaskedLM
    torch.manual_seed(0)
    cfg = BertConfig(**_tiny(), attn_implementation="sdpa")
    return _Logits(BertForMaskedLM(cfg))


def t5() -> nn.Module:
    """An encoder-decoder (T5: relative position buckets, RMSNorm), the ids fed to both."""
    from transformers import T5Config, T5ForConditionalGeneration
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                   num_decoder_layers=2, num_heads=4)
    return _Logits(T5ForConditionalGeneration(cfg), decoder=True)


def vit() -> nn.Module:
    """A vision transformer on 32x32 images, patches of 8."""
    from transformers import ViTConfig, ViTForImageClassification
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64,
                    num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    num_labels=10, attn_implementation="sdpa")
    return _Logits(ViTForImageClassification(cfg), key="pixel_values")


def mixtral() -> nn.Module:
    """A mixture-of-experts LM (4 experts, 2 per token; transformers' batched_mm experts:
    static shapes, the eager loop reads data-dependent sizes)."""
    from transformers import MixtralConfig, MixtralForCausalLM
    torch.manual_seed(0)
    cfg = MixtralConfig(**_tiny(num_key_value_heads=2, num_local_experts=4,
                                num_experts_per_tok=2), attn_implementation="sdpa",
                        experts_implementation="batched_mm")
    return _Logits(MixtralForCausalLM(cfg))


class _SeparableBlock(nn.Module):
    """MobileNet's block: depthwise 3x3, pointwise 1x1, BatchNorm, ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu6(self.bn2(self.pw(F.relu6(self.bn1(self.dw(x))))))


def mobilenet() -> nn.Module:
    """Depthwise-separable convolutions (a grouped convolution too), ReLU6, global pool."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), _SeparableBlock(16, 32, 1),
                         _SeparableBlock(32, 32, 2), nn.Conv2d(32, 32, 3, 1, 1, groups=4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class UNet(nn.Module):
    """A two-level UNet: max-pool down, transposed convolution and bilinear upsampling up,
    skip connections by concatenation; per-pixel classes last."""

    def __init__(self, classes: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.down1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(16, 16, 2, stride=2)
        self.dec2 = nn.Sequential(nn.Conv2d(32, 8, 3, padding=1), nn.ReLU())
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        a = self.down1(x)
        b = self.down2(F.max_pool2d(a, 2))
        m = self.mid(F.max_pool2d(b, 2))
        u = self.dec2(torch.cat([self.up2(m), b], dim=1))
        y = self.dec1(torch.cat([self.up1(u), a], dim=1))
        return y.permute(0, 2, 3, 1)


class Recurrent(nn.Module):
    """Token ids -> embedding -> an LSTM and a GRU (batch first) -> vocabulary logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(100, 32)
        self.lstm = nn.LSTM(32, 48, batch_first=True)
        self.gru = nn.GRU(48, 32, batch_first=True)
        self.head = nn.Linear(32, 100)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        h, _ = self.gru(h)
        return self.head(h)


class MHA(nn.Module):
    """``nn.MultiheadAttention`` (batch first, a key padding mask of zeros) and a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head(y)


class CausalSDPA(nn.Module):
    """A decoder block written by hand: causal ``scaled_dot_product_attention`` with
    dropout, RMSNorm written in Python (pow, mean, rsqrt), GELU written in Python."""

    def __init__(self, d: int = 64, heads: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm = nn.Parameter(torch.ones(d))
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x):
        B, L, d = x.shape
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, d))
        u = self.up(x)
        g = 0.5 * u * (1 + torch.tanh(0.7978845608 * (u + 0.044715 * torch.pow(u, 3))))
        return x + self.down(g)


def unet() -> nn.Module:
    return UNet()


def recurrent() -> nn.Module:
    return Recurrent()


def mha() -> nn.Module:
    return MHA()


def causal_sdpa() -> nn.Module:
    return CausalSDPA()


@dataclass(frozen=True)
class Entry:
    factory: object
    input: str                  # as --input takes it
    dtype: str = "float32"
    sizes: tuple = (("B", 2),)  # the real step's sizes

    @property
    def name(self) -> str:
        return self.factory.__name__


ZOO = {e.name: e for e in (
    Entry(llama, "L", "int64", (("B", 2), ("L", 12))),
    Entry(gpt2, "L", "int64", (("B", 2), ("L", 12))),
    Entry(bert, "L", "int64", (("B", 2), ("L", 12))),
    Entry(t5, "L", "int64", (("B", 2), ("L", 12))),
    Entry(vit, "3x32x32"),
    Entry(mixtral, "L", "int64", (("B", 2), ("L", 12))),
    Entry(mobilenet, "3x32x32"),
    Entry(unet, "3x32x32"),
    Entry(recurrent, "L", "int64", (("B", 2), ("L", 12))),
    Entry(mha, "Lx64", "float32", (("B", 2), ("L", 12))),
    Entry(causal_sdpa, "Lx64", "float32", (("B", 2), ("L", 12))),
)}


def _llama2(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, max_position_embeddings=4096,
                      rms_norm_eps=1e-5, attn_implementation="sdpa")
    return _Logits(LlamaForCausalLM(cfg))


def llama2_7b() -> nn.Module:
    """Llama-2 7B's published configuration (build it on the meta device:
    ``with torch.device("meta")``, as ``symflop estimate`` does)."""
    return _llama2(4096, 11008, 32, 32, 32)


def llama2_70b() -> nn.Module:
    """Llama-2 70B's published configuration (grouped-query attention, 8 key-value
    heads); build it on the meta device."""
    return _llama2(8192, 28672, 80, 64, 8)
