"""Signing in: names and passwords checked against the store's people (studio.people.users), each
sign-in written to the activity log, and Gradio's /login route wrapped so that a client that keeps
sending wrong passwords is refused for a while (studio.ui.sign_in_limits.LoginLimiter)."""

import json
from typing import Callable

from starlette.middleware import Middleware

from studio.people import activity
from studio.people.users import check_password
from studio.store import Store
from studio.ui.sign_in_limits import LOCK_S, MAX_FAILURES, WINDOW_S, LoginLimiter

AUTH_MESSAGE = (f"<b>Adapter Studio</b>: sign in to fine-tune models on this machine. After {MAX_FAILURES} wrong passwords "
                f"within {WINDOW_S // 60} minutes, sign-ins from your address are refused for {LOCK_S // 60} minutes, "
                "even with the right password.")


def password_check(store: Store) -> Callable[[str, str], bool]:
    """Gradio's auth callable: whether a name and password sign in, read from the store at each try,
    so that a person added, changed or removed by an admin counts at once."""
    def signs_in(name: str, password: str) -> bool:
        signed_in = check_password(store, name, password)
        activity.record(store, name, "sign-in", "signed in" if signed_in else "wrong name or password")
        return signed_in
    return signs_in


class LoginGuard:
    """ASGI middleware: counts the answers of POST /login per client address and refuses locked-out clients (429)."""

    def __init__(self, app, limiter: LoginLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown",))[0]
        wait = self.limiter.wait_s(client)
        if wait:
            body = json.dumps({"detail": self.limiter.refusal(wait)}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(round(wait)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        status = {}

        async def noting_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, noting_status)
        if status.get("code") == 400:  # Gradio's answer to wrong credentials
            self.limiter.failed(client)
        elif status.get("code") == 200:
            self.limiter.succeeded(client)


def login_guard(limiter: LoginLimiter | None = None) -> list[Middleware]:
    """The middleware list to hand to Gradio's FastAPI app (launch's app_kwargs)."""
    return [Middleware(LoginGuard, limiter=limiter or LoginLimiter())]
