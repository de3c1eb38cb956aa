using System.Net.Sockets;
using Shoal.Execution;
using Shoal.Protocol;

namespace Shoal.Tests.Support;

/// <summary>A scripted worker that authenticates properly (it knows the secret), then does what the test says:
/// reads Start frames, sends whatever exits it is told to, and heartbeats so that silence never ends it.</summary>
public sealed class FakeWorker : IAsyncDisposable
{
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _heartbeat;

    private FakeWorker(TcpClient client, WelcomeMessage welcome)
    {
        _client = client;
        _stream = client.GetStream();
        Welcome = welcome;
        _heartbeat = Task.Run(HeartbeatAsync);
    }

    public WelcomeMessage Welcome { get; }

    public int Id => Welcome.WorkerId;

    public static async Task<FakeWorker> JoinAsync(int port, byte[] secret, string host, int slots)
    {
        var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        var s = client.GetStream();
        var nonce = Handshake.NewNonce();
        await Frame.WriteAsync(s, MessageType.Hello, Handshake.EncodeHello(nonce), CancellationToken.None);
        var (serverNonce, _) = Handshake.DecodeChallenge((await Frame.ReadAsync(s, CancellationToken.None))!.Value.Payload);
        await Frame.WriteAsync(s, MessageType.Auth, Handshake.EncodeAuth(Handshake.Proof(secret, "worker", serverNonce, nonce)), CancellationToken.None);
        await Frame.WriteAsync(s, MessageType.Register, new RegisterMessage(host, slots, []).Encode(), CancellationToken.None);
        var welcome = (await Frame.ReadAsync(s, CancellationToken.None))!.Value;
        Assert.Equal(MessageType.Welcome, welcome.Type);
        return new FakeWorker(client, WelcomeMessage.Decode(welcome.Payload));
    }

    /// <summary>Reads Start frames until <paramref name="count"/> launch requests have come.</summary>
    public async Task<List<LaunchRequest>> ReceiveStartsAsync(int count)
    {
        var list = new List<LaunchRequest>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (list.Count < count)
        {
            var frame = await Frame.ReadAsync(_stream, timeout.Token) ?? throw new InvalidOperationException("the leader closed the connection");
            if (frame.Type == MessageType.Start)
            {
                list.AddRange(StartMessage.Decode(frame.Payload));
            }
        }

        return list;
    }

    public async Task SendExitsAsync(params TaskExit[] exits)
    {
        await _writeLock.WaitAsync();
        try
        {
            await Frame.WriteAsync(_stream, MessageType.Exits, ExitsMessage.Encode(exits), CancellationToken.None);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>True once the leader has closed this connection, within <paramref name="timeout"/>.</summary>
    public Task<bool> DroppedWithinAsync(TimeSpan timeout) => Loopback.ClosedWithinAsync(_stream, timeout);

    private async Task HeartbeatAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await _writeLock.WaitAsync(_stop.Token);
                try
                {
                    await Frame.WriteAsync(_stream, MessageType.Heartbeat, ReadOnlyMemory<byte>.Empty, _stop.Token);
                }
                finally
                {
                    _writeLock.Release();
                }

                await Task.Delay(500, _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _heartbeat;
        _client.Dispose();
        _stop.Dispose();
        _writeLock.Dispose();
    }
}
