import numpy as np
import pytest
import torch
from python_speech_features import logfbank
from python_speech_features import mfcc as reference_mfcc

from crossfuse.data.audio_features import dct_matrix, log_mel_and_energy, mfcc, resample_frames
from tests.conftest import data_mirror, requires_data


@pytest.mark.parametrize("length", [150, 200, 201, 1945, 4000])
def test_mfcc_matches_python_speech_features_on_synthetic_signals(length):
    rng = np.random.default_rng(length)
    t = np.arange(length) / 8000
    signal = 3000 * np.sin(2 * np.pi * 440 * t) + 200 * rng.normal(size=length)
    expected = reference_mfcc(signal, 8000)
    ours = mfcc(torch.from_numpy(signal), 8000).numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(
        log_mel_and_energy(torch.from_numpy(signal), 8000)[0].numpy(), logfbank(signal, 8000), atol=1e-7
    )


@requires_data
@pytest.mark.parametrize("name", ["0_george_0.wav", "7_yweweler_49.wav", "3_theo_7.wav"])
def test_mfcc_matches_python_speech_features_on_fsdd(name):
    import soundfile

    signal, rate = soundfile.read(data_mirror() / "fsdd" / "recordings" / name, dtype="int16")
    expected = reference_mfcc(signal.astype(np.float64), rate)
    np.testing.assert_allclose(
        mfcc(torch.from_numpy(signal.astype(np.float64)), rate).numpy(), expected, atol=1e-6
    )


def test_dct_matrix_is_scipy_orthonormal_dct():
    from scipy.fft import dct

    x = np.random.default_rng(0).normal(size=(5, 26))
    np.testing.assert_allclose(
        x @ dct_matrix(26, 13).numpy(), dct(x, type=2, norm="ortho")[:, :13], atol=1e-12
    )


def test_resample_frames_keeps_endpoints_and_length():
    sequence = torch.arange(10.0)[:, None].repeat(1, 3)
    resized = resample_frames(sequence, 4)
    assert resized.shape == (4, 3)
    assert resized[0, 0] == 0 and resized[-1, 0] == 9
    np.testing.assert_allclose(resized[:, 0].numpy(), [0, 3, 6, 9])
