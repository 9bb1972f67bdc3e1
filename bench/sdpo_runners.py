"""One forward+backward of each contender for the loss benchmark, on the same random inputs.

Contenders: our implementations (``reference``, ``torch``, ``cpu``, ``triton``), Liger-Kernel's pair
(``LigerFusedLinearJSDLoss`` for the distillation plus ``LigerFusedLinearGRPOLoss`` for the policy
term, the nearest peer doing the same two terms), and the matmul floor: the four products
``hs@W.T``, ``ht@W.T``, ``dZ@W``, ``dZ.T@hs`` through torch.matmul (8*N*V*D FLOPs).

``python bench/sdpo_runners.py NAME B T D V DTYPE DEVICE`` runs one contender once in a fresh process
and prints its peak extra memory (bytes above what the inputs hold) as JSON.
"""

from __future__ import annotations

import json
import sys

import torch

from vsdpo_kernels import SDPOLossConfig, fused_linear_sdpo_loss

CONTENDERS = ("floor", "reference", "torch", "cpu", "triton", "liger")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def make_inputs(B, T, D, V, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    hs = torch.randn(B, T, D, generator=g).to(device=device, dtype=dtype)
    weight = (torch.randn(V, D, generator=g) / D**0.5).to(device=device, dtype=dtype)
    ht = (hs.float() + 0.5 * torch.randn(B, T, D, generator=g).to(device)).to(dtype)
    targets = torch.randint(0, V, (B, T), generator=g).to(device)
    advantages = torch.randn(B, generator=g).to(device)
    old = -torch.rand(B, T, generator=g).to(device) * 5
    mask = torch.ones(B, T, dtype=torch.bool, device=device)
    return dict(hs=hs, weight=weight, ht=ht, targets=targets, advantages=advantages, old=old, mask=mask)


def make_runner(name: str, inputs: dict, config: SDPOLossConfig = SDPOLossConfig()):
    """A closure doing one forward+backward; gradients land on fresh leaf copies each call."""
    hs0, w0, ht = inputs["hs"], inputs["weight"], inputs["ht"]

    if name == "floor":
        B, T, D = hs0.shape
        hs2, ht2 = hs0.reshape(B * T, D), ht.reshape(B * T, D)

        def floor():
            zs = hs2 @ w0.T
            zt = ht2 @ w0.T
            zs @ w0  # dZ @ W (dZ has the shape of zs)
            zs.T @ hs2  # dZ.T @ hs
            del zt

        return floor

    if name == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss, LigerFusedLinearJSDLoss

        jsd = LigerFusedLinearJSDLoss(
            weight_hard_loss=0.0, weight_soft_loss=1.0, beta=config.beta, compiled=False
        )
        grpo = LigerFusedLinearGRPOLoss(
            beta=config.kl_beta,
            compiled=False,
            use_ref_model=False,
            epsilon_low=config.epsilon_low,
            epsilon_high=config.epsilon_high,
            loss_type=config.loss_type,
        )

        def liger():
            hs = hs0.detach().requires_grad_()
            w = w0.detach().requires_grad_()
            B, T, D = hs.shape
            distill = jsd(hs.reshape(B * T, D), w, ht.reshape(B * T, D), w, inputs["targets"].reshape(-1))
            pg = grpo(
                hs,
                w,
                inputs["targets"],
                inputs["mask"].long(),
                inputs["advantages"],
                old_per_token_logps=inputs["old"],
            )
            pg = pg[0] if isinstance(pg, tuple) else pg
            (config.sd_weight * distill + config.pg_weight * pg).backward()

        return liger

    def ours():
        hs = hs0.detach().requires_grad_()
        w = w0.detach().requires_grad_()
        out = fused_linear_sdpo_loss(
            hs,
            w,
            inputs["targets"],
            teacher_hidden=ht,
            advantages=inputs["advantages"],
            old_logprobs=inputs["old"],
            mask=inputs["mask"],
            config=config,
            impl=name,
        )
        out.loss.backward()

    return ours


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    # "5" resets the resident-set high-water mark (VmHWM) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_extra_memory(name, B, T, D, V, dtype, device) -> int:
    inputs = make_inputs(B, T, D, V, DTYPES[dtype], device)
    run = make_runner(name, inputs)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # Peak resident memory above the inputs: VmHWM of this process, not ru_maxrss, which Linux carries
    # over from the process that started this one.
    _reset_peak_rss()
    base = _status_bytes("VmRSS")
    run()
    return _status_bytes("VmHWM") - base


if __name__ == "__main__":
    name, B, T, D, V, dtype, device = sys.argv[1:8]
    print(
        json.dumps(
            {"peak_extra_bytes": peak_extra_memory(name, int(B), int(T), int(D), int(V), dtype, device)}
        )
    )
