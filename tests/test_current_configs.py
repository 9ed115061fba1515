"""Issue 23 item 4: no stale configs. Streams declared after a task was registered, a task registered after a
stream, and a config class kept from before either: fairseq's parser, the tasks and prediction see the current
options. Run in a child process, so the test session's stream registry stays as the other tests expect."""

import subprocess
import sys

from conftest import REPO_ROOT

_LATE_DECLARATIONS = r"""
from dataclasses import dataclass, fields

from memobert_plugin.tasks import MemobertEmotionConfig, MemobertEmotionTask, task_config  # kept from before
from fairseq import options
from fairseq.tasks import register_task
from memobert_plugin.conf import frame_limits
from memobert_plugin.streams import FrameStream, register_stream

register_stream(FrameStream("gaze", dim=4, frames="gaze frames", max_frames=9))
assert "gaze_max_frames" in {f.name for f in fields(task_config("memobert_emotion"))}
assert "gaze_max_frames" in {f.name for f in fields(task_config("memobert_pretrain"))}
# options made from the class kept from before the declaration: the stream's declared limit
assert frame_limits(MemobertEmotionConfig(data="x"))["gaze"] == 9


@dataclass
class LateConfig(MemobertEmotionConfig):  # a task registered after the stream, on the kept class
    late_option: int = 1


@register_task("late_emotion", dataclass=LateConfig)
class LateTask(MemobertEmotionTask):
    pass


for task in ("late_emotion", "memobert_emotion", "memobert_pretrain"):
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "data", "--task", task, "--arch", "memobert_tiny", "--gaze-max-frames", "5", "--visual-max-frames", "7"])
    assert (args.gaze_max_frames, args.visual_max_frames) == (5, 7), task
    assert "gaze_max_frames" in {f.name for f in fields(task_config(task))}, task
print("current")
"""


def test_late_declarations_reach_every_task_and_parser():
    proc = subprocess.run([sys.executable, "-c", _LATE_DECLARATIONS], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("current"), proc.stderr[-3000:]
