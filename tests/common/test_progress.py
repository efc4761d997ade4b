from flower_edge.common.progress import ProgressLines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_each_tenth_with_rate_and_time_left():
    lines, clock = [], Clock()
    progress = ProgressLines("caching", 1000, lines.append, clock=clock)
    for _ in range(100):
        clock.now += 0.5
        progress.advance(10)
    progress.close()
    assert len(lines) == 10  # nine tenths, then the summary
    assert lines[0] == "caching: 100/1000 img (10%), 20 img/s, 45 s left"
    assert lines[-1] == "caching: 1000 img in 50 s, 20 img/s"


def test_a_short_task_prints_its_summary_alone():
    lines, clock = [], Clock()
    progress = ProgressLines("validating", 818, lines.append, clock=clock)
    for _ in range(818):
        clock.now += 0.002
        progress.advance(1)
    progress.close()
    assert lines == ["validating: 818 img in 2 s, 500 img/s"]


def test_slow_work_still_reports_every_few_seconds():
    lines, clock = [], Clock()
    progress = ProgressLines("epoch 1/8", 100_000, lines.append, every=10.0, clock=clock)
    for _ in range(60):  # a minute for 0.06% of the work: no tenth is reached
        clock.now += 1.0
        progress.advance(1, loss=2.5)
    assert len(lines) == 6
    assert all("loss 2.500" in line and "s left" in line for line in lines)


def test_warm_up_is_left_out_of_the_rate():
    lines, clock = [], Clock()
    clock.now = 100.0  # step 1 took long (set-up); the rate counts from its end
    progress = ProgressLines("tuning", 11, lines.append, unit="step", clock=clock, done=1)
    clock.now += 10.0
    progress.advance(5)
    assert lines[-1].startswith("tuning: 6/11 step (55%), 0.5 step/s, 10 s left")


def test_no_total_no_division():
    lines = []
    progress = ProgressLines("nothing", 0, lines.append, clock=Clock())
    progress.close()
    assert lines == ["nothing: 0 img in 0 s"]
