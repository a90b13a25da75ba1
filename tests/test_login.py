"""Sign-in limits: a client that keeps sending wrong passwords is refused for a while."""

from studio.ui.sign_in_limits import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_wrong_passwords_lock_that_client_out_for_a_while_and_no_other():
    clock = Clock()
    limiter = LoginLimiter(max_failures=5, window_s=300, lock_s=300, clock=clock)
    for _ in range(4):
        limiter.failed("10.0.0.9")
    assert limiter.wait_s("10.0.0.9") == 0
    limiter.failed("10.0.0.9")
    assert limiter.wait_s("10.0.0.9") == 300 and limiter.wait_s("10.0.0.7") == 0
    assert "Too many wrong passwords: 5 within 5 minutes" in limiter.refusal(300) and "5 more minute(s)" in limiter.refusal(300)
    clock.now += 301
    assert limiter.wait_s("10.0.0.9") == 0


def test_failures_spread_beyond_the_window_or_cleared_by_a_right_password_do_not_lock():
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window_s=60, lock_s=300, clock=clock)
    for _ in range(4):  # one failure a minute: never three within the window
        limiter.failed("a")
        clock.now += 61
    limiter.failed("b")
    limiter.failed("b")
    limiter.succeeded("b")
    limiter.failed("b")
    assert limiter.wait_s("a") == 0 and limiter.wait_s("b") == 0
