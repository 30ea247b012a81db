"""The GAN trainer: codec (generator) + discriminators, resumable, single- or multi-process.

One step: the codec reconstructs a batch; once `disc_start_step` is reached the
discriminators take a step on real vs detached fake audio; then the codec takes a step on
the weighted sum of its named losses, distillation losses ("distill/<head>/<loss>") included
when the recipe has a `distill` section (the heads train with the codec; their teachers are
frozen and live outside every saved module). Randomness in a step is drawn from a seed derived from
(seed, step, rank), so a resumed run continues exactly as the uninterrupted run would.

Batches load at the codec's output rate; a codec that decodes at another rate than it
encodes (NeuCodec) reads them resampled to its input rate (rates.py), and every loss,
discriminator and logged clip sees audio at the output rate.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import signal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..codecs.base import Codec
from ..data import build_items, make_train_loader, make_val_loader
from ..discriminators import MultiDiscriminator
from ..losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from ..quantizers.codebook_usage import level_metrics
from ..quantizers.perturb import Perturbation
from ..waveform_metrics import mel_distance, si_sdr
from . import checkpoint as ckpt
from .distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_module,
    init_distributed,
    stop_signal_on_any_rank,
)
from .generator_losses import ReconstructionLosses, total_loss, with_quantizer_weights
from .perturb import check_perturbable
from .rates import check_segments, split_batch
from .recipe_config import Recipe
from .runlog import RunLogger
from .schedule import lr_factor
from .trainable import freeze_all_but_decoder

QUANTIZER_LOSSES = ["vq/commit", "vq/codebook"]


class Trainer:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.cfg = recipe.train
        torch.set_flush_denormal(True)  # silent stretches of audio otherwise slow CPUs ~15x
        self.device = pick_device(self.cfg.device)
        self.dist: DistInfo = init_distributed(self.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.run_dir = recipe.run_dir
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every rank
        self.codec = Codec(recipe.model).to(self.device)
        self.recipe = recipe = with_quantizer_weights(recipe, self.codec.quantizer)
        if self.cfg.trainable == "decoder":
            freeze_all_but_decoder(self.codec)
        check_perturbable(self.cfg.perturb, self.codec.quantizer)
        if recipe.data is not None:
            check_segments(self.codec, recipe.data)
        # what the discriminators and losses see: the decoder's output and its target
        rate = self.codec.output_sample_rate
        self.disc = MultiDiscriminator(recipe.discriminators, recipe.model.channels,
                                       rate).to(self.device)
        self.heads = self._distill_heads()
        self.losses = ReconstructionLosses(recipe.losses, rate, self._latent_losses()
                                           ).to(self.device)
        self.opt_g, self.sched_g = self._optimizer(self._generator_params(), recipe.optim.lr)
        self.opt_d, self.sched_d = self._optimizer(list(self.disc.parameters()),
                                                   recipe.optim.disc_lr or recipe.optim.lr)
        self.balancer = self._balancer()
        # only once the recipe has built: a recipe error leaves no (empty) run directory;
        # a start that fails later removes the run directory it made (_abandon)
        self._fresh = not self.run_dir.exists()
        self._lock = ckpt.lock_run_dir(self.run_dir) if self.dist.is_main else None
        self.step = 0
        try:
            self.resumed_from = self._resume()
            self.initialised_from: str | None = None
            if self.resumed_from is None and self.cfg.init_from:
                self._init_from(self.cfg.init_from)
        except BaseException:
            self._abandon()
            raise
        broadcast_module(self.codec, self.dist)
        broadcast_module(self.disc, self.dist)
        if self.heads is not None:
            broadcast_module(self.heads, self.dist)
        self.codec_ddp, self.disc_ddp = self._wrap(self.codec), self._wrap(self.disc)
        self._train_mode()
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ setup
    def _distill_heads(self):
        if self.recipe.distill is None:
            return None
        from ..distill import DistillHeads

        return DistillHeads(self.recipe.distill, self.recipe.model,
                            self.codec.frame_rate).to(self.device)

    def _distill_names(self) -> list[str]:
        return [] if self.heads is None else self.heads.loss_names

    def _generator_params(self) -> list[nn.Parameter]:
        """The codec's parameters, then the distillation heads' (trained together); the
        decoder's alone in a decoder-only post-training."""
        if self.cfg.trainable == "decoder":
            return list(self.codec.decoder.parameters())
        heads = [] if self.heads is None else self.heads.parameters()
        return list(itertools.chain(self.codec.parameters(), heads))

    def _train_mode(self) -> None:
        """Training mode, but for a frozen encoder, which runs as at inference."""
        self.codec.train()
        if self.cfg.trainable == "decoder":
            self.codec.encoder.eval()

    def _optimizer(self, params: list[nn.Parameter], lr: float):
        o = self.recipe.optim
        opt = torch.optim.AdamW(params, lr=lr, betas=tuple(o.betas),
                                weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, o, self.cfg.steps))
        return opt, sched

    def _balancer(self):
        if not self.recipe.losses.balancer:
            return None
        from ..losses import BalancerConfig, LossBalancer

        output = {k: v for k, v in self.recipe.losses.weights.items()
                  if k not in self._latent_losses()}
        return LossBalancer(BalancerConfig(weights=output))

    def _wrap(self, module: nn.Module):
        if not self.dist.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        # quantizer dropout can leave a level without gradient in a step
        return DDP(module, device_ids=ids, find_unused_parameters=True)

    def _init_from(self, ref: str) -> None:
        """Start from trained weights (a fine-tune; init_from.py checks they fit)."""
        from .init_from import initial_weights

        self.codec.load_state_dict(initial_weights(ref, self.codec))
        self.initialised_from = ref

    def _resume(self):
        latest = ckpt.find_latest(self.run_dir)
        if latest is None:
            return None
        from safetensors.torch import load_file

        self.codec.load_state_dict(load_file(str(latest / "model.safetensors")))
        ckpt.load_discriminator(latest, self.disc)
        if self.heads is not None:
            ckpt.load_module(latest, "distill_heads", self.heads)
        state = ckpt.load_state(latest)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        if self.balancer is not None and "balancer" in state:
            self.balancer.load_state_dict(state["balancer"])
        self.step = int(state["step"])
        return latest

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.mixed_precision:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, wav: Tensor, batch: dict | None = None) -> dict[str, float]:
        """One step on wav [B, C, T] at the codec's output rate (its target; rates.py makes
        the input); `batch` (the loader's dict: names, transcripts, offsets) is needed only
        by text and cached distillation teachers."""
        torch.manual_seed(step_seed(self.cfg.seed, self.step, self.dist.rank))
        inputs, wav = split_batch(self.codec, wav)
        use_disc = self.step >= self.cfg.disc_start_step
        # the semantic-only reconstruction is asked for only when a head reads it
        heads = self.heads
        extra = {"semantic_audio": True} if heads is not None and heads.needs_semantic_audio \
            else {}
        perturb = None if self.cfg.perturb is None else self.cfg.perturb.at(self.step)
        if perturb is not None:
            extra["perturb"] = perturb
        extra.update(self._transcripts(inputs, batch))
        with self._autocast():
            out = self.codec_ddp(inputs, **extra)
        values = {}
        if use_disc:
            values.update(self._disc_step(wav, out.audio.detach()))
        losses = {**self.losses(wav, out.audio), **out.losses}
        if self.heads is not None:
            with self._autocast():
                losses.update(self.heads(inputs, out, batch))  # teachers: the input rate
        if use_disc:
            with self._autocast():
                fake = self.disc(out.audio)  # unwrapped: G step does not sync D grads
                with torch.no_grad():
                    real = self.disc(wav)
            losses["adv/gen"] = generator_adversarial_loss(fake, self.recipe.losses.adversarial)
            losses["feat"] = feature_matching_loss(real, fake)
        self.opt_g.zero_grad(set_to_none=True)
        self._backward(losses, out.audio)
        self._sync_head_grads()
        values["grad_norm/gen"] = float(nn.utils.clip_grad_norm_(
            self._generator_params(), self.recipe.optim.grad_clip))
        self.opt_g.step()
        self.sched_g.step()
        broadcast_module(self.codec.quantizer, self.dist)
        values.update({k: float(v.detach()) for k, v in losses.items()})
        values.update({k: float(v.detach()) for k, v in out.metrics.items()})
        values["lr"] = self.sched_g.get_last_lr()[0]
        if self.cfg.perturb is not None:
            values["perturb/rate"] = 0.0 if perturb is None else perturb.rate
        return values

    def _transcripts(self, inputs: Tensor, batch: dict | None) -> dict:
        """{"text": each excerpt's transcript} for a decoder conditioned on text (TaDiCodec),
        else {}; the excerpt's part of its file's transcript (modules/chars.py)."""
        if not self.codec.decoder.takes_text or batch is None \
                or "text" not in batch:
            return {}
        from ..modules.chars import batch_texts

        return {"text": batch_texts(batch, inputs.shape[-1] / self.codec.sample_rate)}

    def _latent_losses(self) -> list[str]:
        """Losses on latents or decoder internals rather than output audio: kept out of the
        balancer."""
        own = list(self.codec.quantizer.loss_weights)  # lfq/, bsq/, gsq/
        return QUANTIZER_LOSSES + own + self._decoder_losses() + self._distill_names()

    def _decoder_losses(self) -> list[str]:
        """Losses a decoder computes on its own outputs (`loss_names`, codecs/contracts.py)."""
        return list(self.codec.decoder.loss_names)

    def _sync_head_grads(self) -> None:
        """Average the heads' gradients over ranks (they are not inside DDP)."""
        if self.heads is None or not self.dist.enabled:
            return
        import torch.distributed as dist

        for p in self.heads.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.dist.world_size

    def _backward(self, losses: dict[str, Tensor], audio: Tensor) -> None:
        weights = self.recipe.losses.weights
        if self.balancer is None:
            total_loss(losses, weights).backward()
            return
        latent = self._latent_losses()
        output = {k: v for k, v in losses.items() if k not in latent}
        rest = {k: v for k, v in losses.items() if k in latent}
        self.balancer.cfg.weights = {k: w for k, w in weights.items() if k in output}
        self.balancer.backward(output, audio, extra_loss=total_loss(rest, weights)
                               if rest else None)

    def _disc_step(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        with self._autocast():
            both = self.disc_ddp(torch.cat([real, fake]))
        b = real.shape[0]
        real_out = [(lg[:b], [f[:b] for f in fm]) for lg, fm in both]
        fake_out = [(lg[b:], [f[b:] for f in fm]) for lg, fm in both]
        loss = discriminator_loss(real_out, fake_out, self.recipe.losses.adversarial)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.disc.parameters(), self.recipe.optim.grad_clip)
        self.opt_d.step()
        self.sched_d.step()  # the discriminator's schedule starts when it does
        return {"adv/disc": float(loss.detach()), "grad_norm/disc": float(norm)}

    # ------------------------------------------------------------------ loop
    def fit(self) -> int:
        """Train to `train.steps`; returns a process exit code (0, or 128+signal). A run that
        fails before its first step (bad data, say) leaves no run directory behind."""
        try:
            return self._fit()
        except BaseException:
            if self.step == 0:
                self._abandon()
            raise

    def _abandon(self) -> None:
        """Remove the run directory this start created (lock file, empty TensorBoard log)."""
        if self._fresh and self.dist.is_main:
            self._lock.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _fit(self) -> int:
        cfg = self.cfg
        log = RunLogger(self.run_dir, self.dist.is_main, self.step, cfg.steps)
        self._install_signal_handlers()
        if self.resumed_from is not None:
            log.info(f"resumed from {self.resumed_from} at step {self.step} "
                     f"(weights {self.codec.fingerprint()})")
        elif self.initialised_from is not None:
            log.info(f"initialised from {self.initialised_from} "
                     f"(weights {self.codec.fingerprint()})")
        splits = build_items(self.recipe.data)
        sr, ch = self.codec.output_sample_rate, self.recipe.model.channels
        loader = make_train_loader(self.recipe.data, sr, ch, cfg.batch_size, cfg.seed,
                                   self.dist.rank, self.dist.world_size, self.step,
                                   items=splits.train)
        audio_per_step = cfg.batch_size * self.dist.world_size * self.recipe.data.segment_seconds
        failed = 0
        batches = iter(loader)
        self._train_mode()
        while self.step < cfg.steps:
            batch = next(batches)
            failed += int(batch["failed"])
            values = self.train_step(batch["wav"].to(self.device, non_blocking=True), batch)
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                values = all_reduce_mean(values, self.dist, self.device)
                values["data/failed_files"] = failed
                values.update(log.throughput(self.step, audio_per_step))
                log.scalars(self.step, values)
                log.progress(self.step, {k: values[k] for k in ("mel", "adv/gen", "adv/disc",
                                                                "perf/audio_s_per_s")
                                         if k in values})
            if cfg.val_every and self.step % cfg.val_every == 0:
                self.validate(splits.val, log)
            code = save_or_stop(self, cfg, log)
            if code is not None:
                return code
        if self.dist.is_main:
            path = self.codec.save_pretrained(self.run_dir / "model")
            log.info(f"done: {self.step} steps; model exported to {path}")
        log.info(f"rank {self.dist.rank} final weights {self.codec.fingerprint()}")
        if self.dist.enabled:
            print(f"[audiotok] rank {self.dist.rank} final weights {self.codec.fingerprint()}",
                  flush=True)
        log.close()
        return 0

    def save(self, log: RunLogger) -> None:
        if self.dist.is_main:
            state = {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                     "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
                     "data_position": self.step * self.cfg.batch_size * self.dist.world_size}
            if self.balancer is not None:
                state["balancer"] = self.balancer.state_dict()
            heads = {} if self.heads is None else {"distill_heads": self.heads}
            path = ckpt.save_checkpoint(self.run_dir, self.step, self.codec, self.disc, state,
                                        keep=self.cfg.keep_checkpoints, modules=heads)
            log.info(f"checkpoint {path.name}")
        barrier(self.dist)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, items, log: RunLogger) -> dict[str, float]:
        sr, ch = self.codec.output_sample_rate, self.recipe.model.channels
        loader = make_val_loader(self.recipe.data, sr, ch, self.cfg.batch_size,
                                 self.dist.rank, self.dist.world_size, items=items)
        self.codec.eval()
        mel, sdr, codes, mel_perturbed = [], [], [], []
        perturb = self._val_perturbation()
        for i, batch in enumerate(loader):
            if i >= self.cfg.val_batches:
                break
            inputs, wav = split_batch(self.codec, batch["wav"].to(self.device))
            out = self.codec(inputs, **self._transcripts(inputs, batch))
            mel.append(mel_distance(wav, out.audio, sr))
            sdr.append(si_sdr(wav, out.audio))
            codes.append(out.codes)
            if perturb is not None:
                audio = self.codec(inputs, perturb=perturb).audio
                mel_perturbed.append(mel_distance(wav, audio, sr))
            if i == 0:
                for j in range(min(self.cfg.audio_examples, wav.shape[0])):
                    if self.step == self.cfg.val_every:
                        log.audio(self.step, f"original_{j}", wav[j], sr)
                    log.audio(self.step, f"reconstruction_{j}", out.audio[j], sr)
        self._train_mode()
        values = {"mel_distance": torch.cat(mel).mean().item(),
                  "si_sdr": torch.cat(sdr).clamp(min=-100).mean().item()}
        if mel_perturbed:
            values["mel_distance_perturbed"] = torch.cat(mel_perturbed).mean().item()
        all_codes = torch.cat([c.transpose(0, 1).flatten(1) for c in codes], dim=1)[None]
        values.update({k: float(v) for k, v in
                       level_metrics(all_codes, self.codec.codebook_sizes).items()})
        values = all_reduce_mean(values, self.dist, self.device)
        log.scalars(self.step, values, prefix="val")
        log.info(f"step {self.step} val mel {values['mel_distance']:.3f} "
                 f"si-sdr {values['si_sdr']:.2f} dB, level 0 usage "
                 f"{values['vq/usage/0']:.1%} perplexity {values['vq/perplexity/0']:.0f}")
        return values

    def _val_perturbation(self):
        """The recipe's perturbation at its full rate, for "val/mel_distance_perturbed": how
        much a validation clip's reconstruction suffers from it (None: no train.perturb)."""
        cfg = self.cfg.perturb
        if cfg is None:
            return None
        return Perturbation(rate=cfg.rate, mode=cfg.mode, neighbours=cfg.neighbours,
                            levels=tuple(cfg.levels))

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self._stop_signal = signum
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def _should_stop(self) -> bool:
        self._stop_signal = stop_signal_on_any_rank(self._stop_signal, self.dist, self.device)
        return bool(self._stop_signal)


def save_or_stop(trainer, cfg, log) -> int | None:
    """After a step: checkpoint on schedule, at the last step, or when a signal (on any rank)
    stops the run. Returns the exit code when it stops (128 + signal), else None. `trainer`
    has step, _should_stop(), save(log) and _stop_signal; `cfg` ckpt_every and steps."""
    stop = trainer._should_stop()
    if trainer.step % cfg.ckpt_every == 0 or trainer.step == cfg.steps or stop:
        trainer.save(log)
    if not stop:
        return None
    log.info(f"stopped by signal {trainer._stop_signal} at step {trainer.step}; "
             f"run the same command to resume")
    log.close()
    return 128 + (trainer._stop_signal or 0)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 63)
