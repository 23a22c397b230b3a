"""A real SMTP server (aiosmtpd) for pipewright's delivery tests.

Usage: smtp_server.py PORT OUTFILE [USER:PASSWORD]
Listens on 127.0.0.1:PORT and appends one JSON line per accepted message to OUTFILE. With
USER:PASSWORD, clients must authenticate (AUTH PLAIN or LOGIN) before sending.
Recipients whose local part starts with "tempfail" are refused with 451 the first two
times a message (by Message-ID) is offered; "permfail" ones always with 550.
"""
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out):
        self.out = out
        self.offered = {}

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message_id = message.get("Message-ID", "")
        locals_ = [r.split("@")[0] for r in envelope.rcpt_tos]
        if any(l.startswith("permfail") for l in locals_):
            return "550 5.1.1 mailbox unavailable"
        if any(l.startswith("tempfail") for l in locals_):
            seen = self.offered.get(message_id, 0) + 1
            self.offered[message_id] = seen
            if seen <= 2:
                return "451 4.3.0 try again later"
        if message.is_multipart():
            text = message.get_body(preferencelist=("plain",)).get_content()
            html_part = message.get_body(preferencelist=("html",))
            html = html_part.get_content() if html_part else None
        else:
            text, html = message.get_content(), None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "message_id": message_id,
            "subject": message.get("Subject", ""),
            "from": message.get("From", ""),
            "to": message.get("To", ""),
            "reply_to": message.get("Reply-To", ""),
            "effect": message.get("X-Pipewright-Effect", ""),
            "list_unsubscribe": message.get("List-Unsubscribe", ""),
            "list_unsubscribe_post": message.get("List-Unsubscribe-Post", ""),
            "text": text,
            "html": html,
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 queued as " + message_id


def authenticator_for(credentials):
    user, password = credentials.split(":", 1)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main(port, out, credentials=None):
    options = {}
    if credentials:
        options = dict(
            authenticator=authenticator_for(credentials),
            auth_required=True,
            auth_require_tls=False,
        )
    controller = Controller(Handler(out), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print("READY", port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
