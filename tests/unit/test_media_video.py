"""Sampling video frames: which frames, when, and every refusal (with param and code)."""

from __future__ import annotations

import dataclasses

import pytest

from inferd.errors import InvalidRequest
from inferd.media import video as video_module
from inferd.media.video import (
    Frame, frame_count_for, pick_at_targets, pick_without_duration, sample_frames, target_times,
)
from tests import media_samples as samples

PARAM = "messages[0].content[0].video_url"
CLIP = samples.video(20, 10)  # 2 s, frame i at i/10 s, coloured frame_color(i)


def sample(data: bytes, *, fps: float = 1.0, max_frames: int = 32, max_pixels: int = 1_000_000,
           time_limit: float = 10.0) -> list[Frame]:
    return sample_frames(data, fps=fps, max_frames=max_frames, max_pixels=max_pixels,
                         time_limit=time_limit, param=PARAM)


def refused(data: bytes, **limits: float) -> str:
    with pytest.raises(InvalidRequest) as caught:
        sample(data, **limits)  # type: ignore[arg-type]
    error = caught.value
    assert (error.status, error.param, error.code) == (400, PARAM, "invalid_video")
    return error.message


def indices(frames: list[Frame]) -> list[int]:
    return [samples.frame_index(frame.image) for frame in frames]


def times(frames: list[Frame]) -> list[float]:
    return [round(frame.timestamp, 3) for frame in frames]


def test_frames_at_fps_with_timestamps_and_colours() -> None:
    frames = sample(CLIP, fps=2)
    assert times(frames) == [0.0, 0.5, 1.0, 1.5]
    assert indices(frames) == [0, 5, 10, 15]
    assert all(f.image.mode == "RGB" and f.image.size == (64, 48) for f in frames)


def test_sampling_at_the_video_rate_keeps_every_frame() -> None:
    assert indices(sample(CLIP, fps=10)) == list(range(20))


def test_fewer_frames_than_targets_gives_each_frame_once() -> None:
    frames = sample(samples.video(3, 1), fps=4)
    assert indices(frames) == [0, 1, 2] and times(frames) == [0.0, 1.0, 2.0]


def test_max_frames_spreads_over_the_whole_video() -> None:
    frames = sample(CLIP, fps=10, max_frames=4)  # segment centres 0.25, 0.75, 1.25, 1.75 s
    assert indices(frames) == [3, 8, 13, 18]
    assert frames[0].timestamp < 0.5 and frames[-1].timestamp >= 1.5


def test_video_without_declared_duration_still_spreads_within_max_frames() -> None:
    data = samples.video_without_duration(40, 10)
    frames = sample(data, fps=10, max_frames=5)
    assert 3 <= len(frames) <= 5 and indices(frames)[0] == 0 and indices(frames)[-1] >= 20
    assert times(frames) == sorted(set(times(frames)))
    assert indices(sample(data, fps=2)) == [0, 5, 10, 15, 20, 25, 30, 35]


def test_frame_is_frozen() -> None:
    frame = sample(CLIP)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.timestamp = 3.0  # type: ignore[misc]


def test_zero_frame_video_is_refused() -> None:
    assert refused(samples.zero_frame_video()).startswith("video has no frames")


@pytest.mark.parametrize("data", [samples.corrupt_video(), samples.damaged_video(),
                                  samples.truncated_video(), b"", CLIP[:100]])
def test_corrupt_or_truncated_video_is_refused(data: bytes) -> None:
    assert "corrupt" in refused(data) or "not a supported" in refused(data)


def test_oversize_frames_are_refused_before_decoding() -> None:
    message = refused(CLIP, max_pixels=64 * 48 - 1)
    assert "64x48" in message and "3,071" in message


def test_tiny_time_limit_is_refused() -> None:
    assert "too long to decode" in refused(CLIP, time_limit=0.0001)


def test_decoded_frame_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_module, "MAX_DECODED_FRAMES", 5)
    assert "more than 5 frames" in refused(samples.video_without_duration(20, 10))


def test_declared_duration_over_the_limit_is_refused() -> None:
    assert "too long (5.0 hours)" in refused(samples.long_declared_video(hours=5))


def test_audio_only_and_non_video_files_are_refused() -> None:
    assert "no video stream" in refused(samples.audio_only("mp4"))
    assert "not a supported video container" in refused(samples.audio_only("wav"))
    assert "not a supported video container" in refused(samples.png(16, 16))


def test_frame_count_for() -> None:
    assert frame_count_for(2.0, 5, 100) == 10
    assert frame_count_for(2.05, 5, 100) == 11
    assert frame_count_for(2.0, 5, 4) == 4
    assert frame_count_for(0.0, 5, 4) == 1
    assert frame_count_for(0.01, 1, 4) == 1


def test_target_times() -> None:
    assert target_times(2.0, 2, 10) == [0.0, 0.5, 1.0, 1.5]
    assert target_times(8.0, 1, 4) == [1.0, 3.0, 5.0, 7.0]


def test_pick_at_targets_runs_past_the_end_to_the_last_frame() -> None:
    frames = [(t / 10, t) for t in range(10)]
    assert pick_at_targets(iter(frames), [0.0, 0.45, 5.0, 6.0]) == [(0.0, 0), (0.5, 5), (0.9, 9)]
    assert pick_at_targets(iter([]), [0.0]) == []


def test_pick_without_duration_keeps_at_most_max_frames_spread_out() -> None:
    frames = [(t / 100, t) for t in range(1000)]  # 10 s at 100 fps
    picked = pick_without_duration(iter(frames), fps=10, max_frames=8)
    stamps = [t for t, _ in picked]
    assert 4 <= len(picked) <= 8 and stamps[0] == 0.0 and stamps[-1] >= 5.0
    assert stamps == sorted(set(stamps))
