using System.Buffers.Binary;

namespace Shoal.Protocol;

/// <summary>
/// The wire unit between leader and workers: a 4-byte big-endian length, then that many bytes: a type byte and
/// the payload. A length of zero or above <see cref="MaxLength"/> ends the connection, so a bad peer cannot make
/// us allocate more than that.
/// </summary>
public static class Frame
{
    public const int MaxLength = 4 << 20;

    public static async Task WriteAsync(Stream stream, MessageType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (payload.Length + 1 > MaxLength)
        {
            throw new ProtocolException($"a {type} frame of {payload.Length + 1} bytes exceeds the {MaxLength} byte limit");
        }

        var buffer = new byte[5 + payload.Length];
        BinaryPrimitives.WriteInt32BigEndian(buffer, payload.Length + 1);
        buffer[4] = (byte)type;
        payload.Span.CopyTo(buffer.AsSpan(5));
        await stream.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads one frame; null at a clean end of stream before a frame starts.</summary>
    public static Task<(MessageType Type, byte[] Payload)?> ReadAsync(Stream stream, CancellationToken cancellationToken) =>
        ReadAsync(stream, MaxLength, cancellationToken);

    /// <summary>Reads one frame of at most <paramref name="maxLength"/> bytes (type byte included): the length prefix is
    /// checked before anything is allocated for the body, so a peer gets no more memory than the caller allows.</summary>
    public static async Task<(MessageType Type, byte[] Payload)?> ReadAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxLength, MaxLength);
        var header = new byte[4];
        var got = await ReadFullyAsync(stream, header, cancellationToken).ConfigureAwait(false);
        if (got == 0)
        {
            return null;
        }

        if (got < 4)
        {
            throw new ProtocolException("the connection ended inside a frame header");
        }

        var length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length <= 0 || length > maxLength)
        {
            throw new ProtocolException($"frame length {length} is outside 1..{maxLength}");
        }

        var body = new byte[length];
        if (await ReadFullyAsync(stream, body, cancellationToken).ConfigureAwait(false) < length)
        {
            throw new ProtocolException("the connection ended inside a frame");
        }

        return ((MessageType)body[0], body[1..]);
    }

    private static async Task<int> ReadFullyAsync(Stream stream, byte[] buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }
}
