using System.Security.Cryptography;
using System.Text;

namespace Shoal.Protocol;

/// <summary>
/// How a connection begins. The worker says Hello (magic, protocol version, role, a fresh nonce); the leader answers
/// with its own fresh nonce and proof that it knows the run's secret; the worker checks that proof (it will run what
/// this leader sends, so it must know it is ours) and answers with its own proof. Proofs are HMAC-SHA256 over both
/// nonces and the role, so the secret never crosses the wire and a recorded answer cannot be replayed against a
/// new nonce. Then the worker registers its slots and GPUs and the leader welcomes it with its id.
/// </summary>
public static class Handshake
{
    public const int Version = 2;
    public const int NonceSize = 32;
    public static readonly byte[] Magic = "SHOAL"u8.ToArray();
    private const int RoleWorker = 1;

    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(NonceSize);

    public static byte[] NewSecret() => RandomNumberGenerator.GetBytes(32);

    public static byte[] Proof(byte[] secret, string role, byte[] first, byte[] second)
    {
        var data = new byte[role.Length + first.Length + second.Length];
        Encoding.ASCII.GetBytes(role, data);
        first.CopyTo(data, role.Length);
        second.CopyTo(data, role.Length + first.Length);
        return HMACSHA256.HashData(secret, data);
    }

    public static bool Verify(byte[] expected, byte[] actual) =>
        expected.Length == actual.Length && CryptographicOperations.FixedTimeEquals(expected, actual);

    public static ReadOnlyMemory<byte> EncodeHello(byte[] clientNonce) =>
        new PayloadWriter().Raw(Magic).Int(Version).Int(RoleWorker).Bytes(clientNonce).Written;

    public static byte[] DecodeHello(byte[] payload)
    {
        var r = new PayloadReader(payload);
        if (!r.Raw(Magic.Length).SequenceEqual(Magic))
        {
            throw new ProtocolException("not a Shoal peer (bad magic)");
        }

        var version = r.Int();
        if (version != Version)
        {
            throw new ProtocolException($"protocol version {version}; this Shoal speaks {Version} (use the same shoal binary on every node)");
        }

        if (r.Int() != RoleWorker)
        {
            throw new ProtocolException("unknown role");
        }

        var nonce = r.Bytes();
        r.End();
        return nonce.Length == NonceSize ? nonce : throw new ProtocolException("bad nonce size");
    }

    public static ReadOnlyMemory<byte> EncodeChallenge(byte[] serverNonce, byte[] leaderProof) =>
        new PayloadWriter().Bytes(serverNonce).Bytes(leaderProof).Written;

    public static (byte[] ServerNonce, byte[] LeaderProof) DecodeChallenge(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var nonce = r.Bytes();
        var proof = r.Bytes();
        r.End();
        return nonce.Length == NonceSize ? (nonce, proof) : throw new ProtocolException("bad nonce size");
    }

    public static ReadOnlyMemory<byte> EncodeAuth(byte[] workerProof) => new PayloadWriter().Bytes(workerProof).Written;

    public static byte[] DecodeAuth(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var proof = r.Bytes();
        r.End();
        return proof;
    }
}
