"""The BEATs trainer: one stage of one iteration (Chen et al. 2022, sec. 3.1), resumable.

stage ssl:       labels = the tokenizer's codes (no gradient); the SSL model learns to predict
                 them on masked patches. Exports <run>/model (the SSL model, the next
                 tokenizer's teacher) and <run>/tokenizer (the codec that made its labels).
stage tokenizer: targets = the frozen teacher's last layer; the tokenizer and its estimator
                 learn to predict them through the codebook. Exports <run>/model, a
                 tokens-only codec that `load_codec` opens.

Shared with the codec trainer: data loaders, learning-rate schedule, checkpoints (the
tokenizer in model.safetensors, the SSL model or estimator beside it), run logs, process
groups. Randomness in a step (masks, dropout) is drawn from a seed of (seed, step, rank).
"""

from __future__ import annotations

import contextlib
import shutil
import signal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..codecs.base import Codec
from ..data import build_items, make_train_loader, make_val_loader
from ..errors import ConfigError
from ..train import checkpoint as ckpt
from ..train.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_module,
    init_distributed,
    stop_signal_on_any_rank,
)
from ..train.runlog import RunLogger
from ..train.schedule import lr_factor
from ..train.trainer import pick_device, save_or_stop, step_seed
from .beats_recipe import BEATsRecipe
from .distill import TokenizerDistiller
from .ssl_model import SSLModel, load_ssl_model


class BEATsTrainer:
    def __init__(self, recipe: BEATsRecipe):
        self.recipe, self.cfg = recipe, recipe.train
        torch.set_flush_denormal(True)
        self.device = pick_device(self.cfg.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.run_dir = recipe.run_dir
        torch.manual_seed(self.cfg.seed)
        self.stage = recipe.stage
        if self.stage == "ssl":
            self.tokenizer = self._labeller()
            self.student = SSLModel(recipe.beats.ssl, self.tokenizer.codebook_size)
            self._check_labels()
            self.model: nn.Module = self.student
            self.teacher = None
        else:
            self.teacher = load_ssl_model(recipe.beats.teacher, "beats.teacher").to(self.device)
            self.tokenizer = Codec(recipe.model)
            self.model = TokenizerDistiller(self.tokenizer, recipe.beats.estimator, self.teacher)
        self.model.to(self.device)
        self.tokenizer.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        o = recipe.optim
        self.opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas),
                                     weight_decay=o.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, o, self.cfg.steps))
        self._fresh = not self.run_dir.exists()
        self._lock = ckpt.lock_run_dir(self.run_dir) if self.dist.is_main else None
        self.step = 0
        try:
            self.resumed_from = self._resume()
        except BaseException:
            self._abandon()
            raise
        broadcast_module(self.model, self.dist)
        self.wrapped = self.model if not self.dist.enabled else DDP(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ setup
    def _labeller(self) -> Codec:
        """The frozen tokenizer of stage ssl: `beats.tokenizer` if set, else `model`."""
        from ..codecs.loading import load_codec
        from ..errors import AudiotokError

        ref = self.recipe.beats.tokenizer
        if ref is None:
            codec = Codec(self.recipe.model)
        else:
            try:
                codec = load_codec(ref)
            except AudiotokError as e:
                raise AudiotokError(f"beats.tokenizer: {e}") from None
        return codec.eval().requires_grad_(False)

    def _check_labels(self) -> None:
        t, ssl = self.tokenizer, self.recipe.beats.ssl
        if t.n_codebooks != 1 or t.hop_length != ssl.hop_length or \
                t.frame_multiple != ssl.per_stretch:
            raise ConfigError(f"beats.ssl: the SSL model's patches ({ssl.hop_length} samples, "
                              f"{ssl.per_stretch} per stretch) need a tokenizer with one code "
                              f"per patch; this one gives {t.n_codebooks} code(s) per "
                              f"{t.hop_length} samples, {t.frame_multiple} per stretch")

    def _modules(self) -> dict[str, nn.Module]:
        """Checkpoint files beside the tokenizer's model.safetensors."""
        if self.stage == "ssl":
            return {"ssl": self.student}
        return {"estimator": self.model.estimator}

    def _resume(self):
        latest = ckpt.find_latest(self.run_dir)
        if latest is None:
            return None
        from safetensors.torch import load_file

        self.tokenizer.load_state_dict(load_file(str(latest / "model.safetensors")))
        for stem, module in self._modules().items():
            ckpt.load_module(latest, stem, module)
        state = ckpt.load_state(latest)
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.step = int(state["step"])
        return latest

    def _abandon(self) -> None:
        if self._fresh and self.dist.is_main:
            self._lock.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.mixed_precision:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _crop(self, wav: Tensor) -> Tensor:
        """Whole stretches of patches (the segment may not be a multiple of one)."""
        stretch = self.tokenizer.hop_length * self.tokenizer.frame_multiple
        return wav[..., : wav.shape[-1] // stretch * stretch]

    def losses(self, wav: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(named losses, metrics) of one batch wav [B, C, T] in whole stretches."""
        if self.stage == "ssl":
            with torch.no_grad():
                labels = self.tokenizer.quantizer.encode(self.tokenizer.encoder(wav))[:, 0]
            with self._autocast():
                out = self.wrapped(wav, labels)
            return {"ssl/mlm": out.loss}, {"ssl/accuracy": out.accuracy.detach()}
        with torch.no_grad(), self._autocast():
            target = self.teacher.features(wav)
        with self._autocast():
            return self.wrapped(wav, target)

    def train_step(self, wav: Tensor) -> dict[str, float]:
        torch.manual_seed(step_seed(self.cfg.seed, self.step, self.dist.rank))
        self.model.train()
        losses, metrics = self.losses(self._crop(wav))
        weights = self.recipe.losses.weights
        total = sum(weights.get(k, 0.0) * v.float() for k, v in losses.items())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.grad_clip)
        self.opt.step()
        self.sched.step()
        values = {k: float(v.detach()) for k, v in {**losses, **metrics}.items()}
        values.update({"loss": float(total.detach()), "grad_norm": float(norm),
                       "lr": self.sched.get_last_lr()[0]})
        return values

    @torch.no_grad()
    def validate(self, items, log: RunLogger) -> dict[str, float]:
        """Mean losses over `val_batches` validation batches, eval mode, masks seeded."""
        loader = make_val_loader(self.recipe.data, self.tokenizer.sample_rate, 1,
                                 self.cfg.batch_size, self.dist.rank, self.dist.world_size,
                                 items=items)
        self.model.eval()
        torch.manual_seed(self.cfg.seed)
        sums: dict[str, float] = {}
        n = 0
        for i, batch in enumerate(loader):
            if i >= self.cfg.val_batches:
                break
            losses, metrics = self.losses(self._crop(batch["wav"].to(self.device)))
            for k, v in {**losses, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        self.model.train()
        values = all_reduce_mean({k: v / max(n, 1) for k, v in sums.items()}, self.dist,
                                 self.device)
        log.scalars(self.step, values, prefix="val")
        log.info(f"step {self.step} val " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        return values

    # ------------------------------------------------------------------ loop
    def fit(self) -> int:
        """Train to `train.steps`; returns a process exit code (0, or 128+signal). The run
        directory is unlocked on return, so the same process may start it again."""
        try:
            return self._fit()
        except BaseException:
            if self.step == 0:
                self._abandon()
            raise
        finally:
            if self._lock is not None:
                self._lock.close()

    def _fit(self) -> int:
        cfg = self.cfg
        log = RunLogger(self.run_dir, self.dist.is_main, self.step, cfg.steps)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if self.resumed_from is not None:
            log.info(f"resumed from {self.resumed_from} at step {self.step}")
        splits = build_items(self.recipe.data)
        loader = make_train_loader(self.recipe.data, self.tokenizer.sample_rate, 1,
                                   cfg.batch_size, cfg.seed, self.dist.rank,
                                   self.dist.world_size, self.step, items=splits.train)
        batches = iter(loader)
        while self.step < cfg.steps:
            values = self.train_step(next(batches)["wav"].to(self.device, non_blocking=True))
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                values = all_reduce_mean(values, self.dist, self.device)
                log.scalars(self.step, values)
                log.progress(self.step, {k: values[k] for k in ("loss", "ssl/accuracy",
                                                                "distill/cosine") if k in values})
            if cfg.val_every and self.step % cfg.val_every == 0 and splits.val:
                self.validate(splits.val, log)
            code = save_or_stop(self, cfg, log)
            if code is not None:
                return code
        if self.dist.is_main:
            self.export(log)
        log.close()
        return 0

    def export(self, log: RunLogger) -> None:
        if self.stage == "ssl":
            self.student.save(self.run_dir / "model")
            self.tokenizer.save_pretrained(self.run_dir / "tokenizer")
            log.info(f"done: {self.step} steps; SSL model in {self.run_dir / 'model'} (the "
                     f"next tokenizer's beats.teacher), its labeller in "
                     f"{self.run_dir / 'tokenizer'}")
        else:
            self.tokenizer.eval()
            path = self.tokenizer.save_pretrained(self.run_dir / "model")
            log.info(f"done: {self.step} steps; tokenizer exported to {path}")

    def save(self, log: RunLogger) -> None:
        if self.dist.is_main:
            state = {"opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                     "data_position": self.step * self.cfg.batch_size * self.dist.world_size}
            path = ckpt.save_checkpoint(self.run_dir, self.step, self.tokenizer, None, state,
                                        keep=self.cfg.keep_checkpoints, modules=self._modules())
            log.info(f"checkpoint {path.name}")
        barrier(self.dist)

    def _on_signal(self, signum, _frame) -> None:
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        self._stop_signal = stop_signal_on_any_rank(self._stop_signal, self.dist, self.device)
        return bool(self._stop_signal)
