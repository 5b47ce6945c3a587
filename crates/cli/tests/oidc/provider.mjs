// A real OpenID provider for the tests: node-oidc-provider (a certified
// implementation) on 127.0.0.1, its development login form accepting any
// user. Arguments: PORT REDIRECT_URI [ACCESS_TOKEN_TTL_SECONDS].
import Provider from 'oidc-provider';

const [port, redirect, ttl] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const seconds = Number(ttl || 3600);

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'shop',
    client_secret: 'shop-client-secret',
    redirect_uris: [redirect],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
  // Every login gets a refresh token, not only `offline_access` ones.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: seconds, IdToken: seconds, RefreshToken: 3600 },
  claims: { openid: ['sub'], email: ['email'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@shop.test` }),
  }),
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1', () => console.log(`listening ${issuer}`));
