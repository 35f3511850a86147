/**
 * Where a webhook may be sent (SSRF protection). A URL must be https (http only when private
 * addresses are allowed), carry no credentials, and its host must resolve only to public unicast
 * addresses: loopback, private (RFC 1918), link-local (cloud metadata at 169.254.169.254),
 * carrier-grade NAT (100.64/10, Alibaba's metadata), unique-local IPv6 (fd00:ec2::254, AWS's
 * metadata), IPv4-mapped IPv6 of any of those, multicast, reserved and documentation ranges are
 * refused. Address classes come from ipaddr.js, not hand-written ranges.
 *
 * The check runs at registration and again at every delivery attempt; the attempt then connects
 * to the very address that was checked (`pinnedLookup`), so a DNS answer that changes between
 * the check and the connection (rebinding) cannot send it elsewhere.
 */
import dns from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export interface AddressPolicy {
  /** WEBHOOK_ALLOW_PRIVATE: any address, and plain http. */
  allowPrivate: boolean;
}

/** One resolved address, as dns.lookup gives it. */
export interface Resolved {
  address: string;
  family: 4 | 6;
}

/** `dns.lookup(host, { all: true })`, or a stand-in with the same contract. */
export type Resolve = (hostname: string) => Promise<Resolved[]>;

export const systemResolve: Resolve = async (hostname) => {
  const found = await dns.promises.lookup(hostname, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** A URL or address that may not be used, and why (said so a client can act on it). */
export class UrlRefusedError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'UrlRefusedError';
  }
}

/** The class of a non-public address (`loopback`, `private`, …), or null for public unicast. */
export function addressClass(address: string): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return 'invalid';
  }
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6;
    // ::ffff:10.0.0.1 reaches 10.0.0.1: judge the IPv4 address inside.
    if (v6.isIPv4MappedAddress()) {
      const inner = addressClass(v6.toIPv4Address().toString());
      return inner === null ? null : `IPv4-mapped ${inner}`;
    }
  }
  const range = parsed.range();
  return range === 'unicast' ? null : range;
}

/**
 * The URL, parsed, if its form is acceptable: http(s), no credentials, a host; https unless
 * private addresses are allowed. Says what is wrong otherwise.
 */
export function checkUrlForm(raw: string, policy: AddressPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UrlRefusedError('must be an absolute URL, e.g. https://example.com/webhooks');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UrlRefusedError('must be an https:// URL');
  }
  if (url.protocol === 'http:' && !policy.allowPrivate) {
    throw new UrlRefusedError(
      'must be an https:// URL (plain http is allowed only with WEBHOOK_ALLOW_PRIVATE=true)',
    );
  }
  if (url.username || url.password) {
    throw new UrlRefusedError('must not contain credentials (user:password@)');
  }
  if (!url.hostname) throw new UrlRefusedError('must name a host');
  return url;
}

/** The host of a URL as an address literal (brackets of IPv6 removed), if it is one. */
function literalAddress(url: URL): string | undefined {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return net.isIP(host) ? host : undefined;
}

/**
 * The address to connect to for `url`: every address its host resolves to must be allowed (a
 * name with one private address among public ones is refused), and the first is used.
 */
export async function resolveTarget(
  url: URL,
  policy: AddressPolicy,
  resolve: Resolve = systemResolve,
): Promise<Resolved> {
  const literal = literalAddress(url);
  let addresses: Resolved[];
  if (literal) {
    addresses = [{ address: literal, family: net.isIPv6(literal) ? 6 : 4 }];
  } else {
    try {
      addresses = await resolve(url.hostname);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'failed';
      throw new UrlRefusedError(`host ${url.hostname} does not resolve (${code})`);
    }
  }
  const first = addresses[0];
  if (!first) throw new UrlRefusedError(`host ${url.hostname} has no address`);
  if (!policy.allowPrivate) {
    for (const { address } of addresses) {
      const kind = addressClass(address);
      if (kind !== null) {
        throw new UrlRefusedError(
          `resolves to ${address}, which is not a public address (${kind}); only public addresses are allowed`,
        );
      }
    }
  }
  return first;
}

/** Checks a URL as registration does: form, then every address it resolves to. */
export async function checkUrl(
  raw: string,
  policy: AddressPolicy,
  resolve: Resolve = systemResolve,
): Promise<URL> {
  const url = checkUrlForm(raw, policy);
  await resolveTarget(url, policy, resolve);
  return url;
}

/**
 * A `lookup` for http.request that answers every lookup with `target`: the connection goes to
 * the checked address whatever DNS says by then. Node 20 asks for `all: true` (happy eyeballs).
 */
export function pinnedLookup(target: Resolved): net.LookupFunction {
  return (_hostname, options, callback) => {
    if ((options as dns.LookupAllOptions).all) {
      (callback as unknown as (err: null, addresses: dns.LookupAddress[]) => void)(null, [
        { address: target.address, family: target.family },
      ]);
    } else {
      callback(null, target.address, target.family);
    }
  };
}
