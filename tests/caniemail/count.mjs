// caniemail's verdict on one email for the clients most readers use (Apple Mail, Gmail, Outlook,
// Yahoo: 14 apps and webmails). Reads the HTML on stdin and prints JSON:
// {"clients": [...], "errors": [...unique...], "warnings": [...unique...]}.
// Run by tests/test_email_clients.py; `npm ci` in this folder installs the data.
import { readFileSync } from "node:fs";
import { DoIUseEmail } from "@jsx-email/doiuse-email";

const CLIENTS = ["apple-mail.*", "gmail.*", "outlook.*", "yahoo.*"];

const checker = new DoIUseEmail({ emailClients: CLIENTS });
const result = checker.check(readFileSync(0, "utf8"));
const unique = (list) => [...new Set(list)].sort();
process.stdout.write(
  JSON.stringify({
    clients: checker.emailClients,
    errors: unique(result.success ? [] : result.errors),
    warnings: unique(result.warnings),
  })
);
