using Shoal.Protocol;
using Shoal.Tests.Support;

namespace Shoal.Tests.Protocol;

public sealed class PeerConnectionTests
{
    [Fact]
    public async Task SendAsync_FrameOverLimit_ThrowsAndClosesTheConnection()
    {
        var (server, client) = await Loopback.PairAsync();
        using var _ = client;
        await using var connection = new PeerConnection(server);
        connection.StartHeartbeat();

        await Assert.ThrowsAsync<ProtocolException>(() => connection.SendAsync(MessageType.Start, new byte[Frame.MaxLength]));

        Assert.True(connection.Closed.IsCancellationRequested, "a failed send must close the connection");
        Assert.StartsWith("sending Start failed: a Start frame of", connection.CloseReason, StringComparison.Ordinal);
        Assert.True(await Loopback.ClosedWithinAsync(client.GetStream(), TimeSpan.FromSeconds(10)), "the peer must see the connection end (heartbeats must not keep it alive)");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => connection.SendAsync(MessageType.Heartbeat, ReadOnlyMemory<byte>.Empty));
    }

    [Fact]
    public async Task ReceiveAsync_LengthPrefixOverTheCallersCap_ThrowsBeforeTheBodyArrives()
    {
        var (server, client) = await Loopback.PairAsync();
        using var _ = client;
        await using var connection = new PeerConnection(server);
        // Only the 4-byte prefix of a 2 MiB frame: a reader that waited for (or allocated) the body would hang here.
        await client.GetStream().WriteAsync(new byte[] { 0, 0x20, 0, 0 });

        var e = await Assert.ThrowsAsync<ProtocolException>(() => connection.ReceiveAsync(TimeSpan.FromSeconds(30), maxLength: 1024));
        Assert.Contains("outside 1..1024", e.Message, StringComparison.Ordinal);
    }
}
