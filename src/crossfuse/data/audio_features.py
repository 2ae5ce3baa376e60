"""MFCC and log-mel features computed in torch (torchaudio does not load beside our torch build).

The steps and defaults follow ``python_speech_features`` (Lyons et al.), so that library serves as the
reference in the tests: pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``; frames of 25 ms every 10 ms, the last
one zero-padded; power spectrum ``|FFT_512(frame)|^2 / 512``; a bank of 26 triangular mel filters,
``mel(f) = 2595 log10(1 + f / 700)``; the log of the filter energies (log-mel); a type-II orthonormal DCT
keeping 13 coefficients, sine-liftered with L = 22; coefficient 0 replaced by the log frame energy.
"""

from __future__ import annotations

import math

import torch


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_filters: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Triangular mel filters, shape ``(n_filters, n_fft // 2 + 1)``, on FFT bins as in Lyons' code."""
    mels = torch.linspace(0.0, float(hz_to_mel(sample_rate / 2)), n_filters + 2, dtype=torch.float64)
    bins = torch.floor((n_fft + 1) * mel_to_hz(mels) / sample_rate).long()
    bank = torch.zeros(n_filters, n_fft // 2 + 1, dtype=torch.float64)
    for j in range(n_filters):
        left, centre, right = bins[j].item(), bins[j + 1].item(), bins[j + 2].item()
        for i in range(left, centre):
            bank[j, i] = (i - left) / (centre - left)
        for i in range(centre, right):
            bank[j, i] = (right - i) / (right - centre)
    return bank


def frame_signal(signal: torch.Tensor, frame_length: int, frame_step: int) -> torch.Tensor:
    """Overlapping frames ``(n_frames, frame_length)``; the tail is zero-padded to a whole frame."""
    length = signal.shape[-1]
    n_frames = 1 if length <= frame_length else 1 + math.ceil((length - frame_length) / frame_step)
    padded_length = (n_frames - 1) * frame_step + frame_length
    padded = torch.nn.functional.pad(signal, (0, padded_length - length))
    return padded.unfold(-1, frame_length, frame_step)


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``(n_in, n_out)`` so that ``x @ D`` is scipy's ``dct(x, norm='ortho')``."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * n[:, None] + 1) * k[None, :] / (2 * n_in))
    scale = torch.full((n_out,), math.sqrt(2.0 / n_in), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n_in)
    return basis * scale


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def log_mel_and_energy(
    signal: torch.Tensor,
    sample_rate: int,
    frame_seconds: float = 0.025,
    step_seconds: float = 0.01,
    n_filters: int = 26,
    n_fft: int = 512,
    preemphasis: float = 0.97,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log mel-filter energies ``(n_frames, n_filters)`` and log frame energy ``(n_frames,)``."""
    x = signal.to(torch.float64)
    x = torch.cat([x[:1], x[1:] - preemphasis * x[:-1]])
    frames = frame_signal(
        x, _round_half_up(frame_seconds * sample_rate), _round_half_up(step_seconds * sample_rate)
    )
    power = torch.fft.rfft(frames, n=n_fft).abs() ** 2 / n_fft
    tiny = torch.finfo(torch.float64).eps
    energy = power.sum(-1)
    energy = torch.where(energy == 0, tiny, energy)
    filtered = power @ mel_filterbank(n_filters, n_fft, sample_rate).T
    filtered = torch.where(filtered == 0, tiny, filtered)
    return torch.log(filtered), torch.log(energy)


def mfcc(
    signal: torch.Tensor,
    sample_rate: int,
    n_coefficients: int = 13,
    n_filters: int = 26,
    lifter: int = 22,
    **frame_options: float,
) -> torch.Tensor:
    """MFCC sequence ``(n_frames, n_coefficients)`` of a 1-D signal (float64).

    ``c = lift(DCT_ortho(log(P F^T)))[:, :n_coefficients]`` with ``lift(c)_k = c_k (1 + L/2 sin(pi k / L))``
    and ``c_0`` replaced by the log frame energy, as in ``python_speech_features.mfcc``.
    """
    log_mel, log_energy = log_mel_and_energy(signal, sample_rate, n_filters=n_filters, **frame_options)
    coefficients = log_mel @ dct_matrix(n_filters, n_coefficients)
    k = torch.arange(n_coefficients, dtype=torch.float64)
    coefficients = coefficients * (1 + lifter / 2 * torch.sin(math.pi * k / lifter))
    coefficients[:, 0] = log_energy
    return coefficients


def resample_frames(sequence: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Linearly interpolate a ``(T, F)`` sequence to ``(n_frames, F)`` so clips of any length stack."""
    resized = torch.nn.functional.interpolate(
        sequence.T[None], size=n_frames, mode="linear", align_corners=True
    )
    return resized[0].T
