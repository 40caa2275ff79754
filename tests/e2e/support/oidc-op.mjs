// A real OpenID Provider for the browser tests: npm `oidc-provider` on loopback, with its
// development login and consent pages (any login name works).
//
// Environment:
//   OP_PORT           the port to listen on (127.0.0.1)
//   OP_CLIENT_ID      the one client's id
//   OP_CLIENT_SECRET  its secret (client_secret_basic)
//   OP_REDIRECT_URIS  its redirect URIs, space-separated
//
// Accounts: the login name is the account. Its email is the login name when that contains
// an `@`, else `<login>@example.com`; `email_verified` is false for login names starting with
// `unverified`. The subject is `sub-<login>`.
//
// Prints `ready <issuer>` on stdout once it listens.

import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;

function account(login) {
  const email = login.includes('@') ? login : `${login}@example.com`;
  return {
    accountId: login,
    async claims() {
      return {
        sub: `sub-${login}`,
        email,
        email_verified: !login.startsWith('unverified'),
        name: `Test ${login}`,
      };
    },
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OP_CLIENT_ID,
      client_secret: process.env.OP_CLIENT_SECRET,
      redirect_uris: process.env.OP_REDIRECT_URIS.split(' '),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Puts the requested claims into the ID token too (not only userinfo).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['larder-e2e-op-cookie-key'] },
  async findAccount(_ctx, id) {
    return account(id);
  },
});
// The dev login form answers with the account id it was given.
provider.on('server_error', (_ctx, err) => console.error('op server_error', err));

const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
