"""A real SMTP server for the email sink's tests (aiosmtpd), on loopback.

    python3 smtp_server.py PORT OUT_DIR [--user NAME --password SECRET] [--cert PEM --key PEM]

Writes each received message to OUT_DIR as <n>.eml, beside <n>.json holding its envelope
({"mail_from", "rcpt_tos"}). Recipients whose local part starts with `tempfail` are answered
451, those starting with `reject` 550. With --user/--password, AUTH (PLAIN, LOGIN) is offered
and required; with --cert/--key, STARTTLS is offered and required before AUTH and MAIL.
Prints "ready" on standard output once it accepts connections.
"""

import argparse
import json
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.2.0 Mailbox busy, try again later"
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.out_dir, str(n))
        with open(base + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        # The .eml appears last and whole: a reader that sees it sees the envelope too.
        os.replace(base + ".json.tmp", base + ".json")
        os.replace(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("out_dir")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        # handled=False: the server answers a failure with its own 535.
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if args.user:
        kwargs.update(
            authenticator=authenticate,
            auth_required=True,
            auth_require_tls=tls_context is not None,
        )
    if tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=True)
    controller = Controller(
        Handler(args.out_dir), hostname="127.0.0.1", port=args.port, **kwargs
    )
    controller.start()
    print("ready", flush=True)
    # Until the test closes standard input (or kills the process).
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
