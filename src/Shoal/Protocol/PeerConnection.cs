using System.Net.Sockets;

namespace Shoal.Protocol;

/// <summary>
/// One authenticated-or-not TCP connection: serialised frame writes, reads with a silence timeout, and a heartbeat
/// every <see cref="HeartbeatInterval"/> so that the other side can tell a live but idle peer from a dead one.
/// A send that fails for any reason closes the connection: a frame half written (or never written) leaves the stream
/// in a state neither side can trust, and a connection whose sends fail while heartbeats still flow would look alive
/// to both ends while nothing gets through.
/// </summary>
public sealed class PeerConnection : IAsyncDisposable
{
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(2);

    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _closed = new();
    private Task? _heartbeat;
    private int _closing;
    private string? _closeReason;

    public PeerConnection(TcpClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _client.NoDelay = true;
        _stream = client.GetStream();
        Remote = client.Client.RemoteEndPoint?.ToString() ?? "?";
    }

    public string Remote { get; }

    /// <summary>Silence longer than this ends the connection (default 10 s; SHOAL_HEARTBEAT_TIMEOUT overrides, for tests).</summary>
    public static TimeSpan SilenceTimeout { get; } =
        double.TryParse(Environment.GetEnvironmentVariable("SHOAL_HEARTBEAT_TIMEOUT"), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(10);

    public CancellationToken Closed => _closed.Token;

    /// <summary>Writes one frame. Any failure (an oversized frame included) closes the connection, then throws.</summary>
    public async Task SendAsync(MessageType type, ReadOnlyMemory<byte> payload)
    {
        await _writeLock.WaitAsync(_closed.Token).ConfigureAwait(false);
        try
        {
            await Frame.WriteAsync(_stream, type, payload, _closed.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Close($"sending {type} failed: {e.Message}");
            throw;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Why the connection was closed from this side, when <see cref="Close"/> was given a reason (a failed send).</summary>
    public string? CloseReason => Volatile.Read(ref _closeReason);

    /// <summary>Ends the connection now (idempotent, any thread; the first reason stays): pending and later reads
    /// and writes fail, the heartbeat stops, and the peer sees the connection end. <see cref="DisposeAsync"/> still
    /// releases it.</summary>
    public void Close(string? reason = null)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        Volatile.Write(ref _closeReason, reason);
        try
        {
            _closed.Cancel();
            _client.Client.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
        {
            // Already disposed or already gone: closed either way.
        }
    }

    /// <summary>The next frame other than a heartbeat; null when the peer closed. Throws on silence, a bad frame or
    /// one longer than <paramref name="maxLength"/> (before its body is read).</summary>
    public async Task<(MessageType Type, byte[] Payload)?> ReceiveAsync(TimeSpan? timeout = null, int maxLength = Frame.MaxLength)
    {
        while (true)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(_closed.Token);
            cts.CancelAfter(timeout ?? SilenceTimeout);
            (MessageType, byte[])? frame;
            try
            {
                frame = await Frame.ReadAsync(_stream, maxLength, cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!_closed.IsCancellationRequested)
            {
                throw new ProtocolException($"{Remote} was silent for {(timeout ?? SilenceTimeout).TotalSeconds:0.#} s");
            }
            catch (IOException e)
            {
                throw new ProtocolException($"{Remote}: {e.Message}", e);
            }

            if (frame is not { } f || f.Item1 != MessageType.Heartbeat)
            {
                return frame;
            }
        }
    }

    /// <summary>Starts sending heartbeats (once; later calls do nothing).</summary>
    public void StartHeartbeat()
    {
        if (_heartbeat is not null)
        {
            return;
        }

        _heartbeat = Task.Run(async () =>
        {
            try
            {
                while (!_closed.IsCancellationRequested)
                {
                    await Task.Delay(HeartbeatInterval, _closed.Token).ConfigureAwait(false);
                    await SendAsync(MessageType.Heartbeat, ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or SocketException)
            {
            }
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closing, 1) == 0)
        {
            await _closed.CancelAsync().ConfigureAwait(false);
        }

        _client.Dispose();
        if (_heartbeat is not null)
        {
            await _heartbeat.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        _writeLock.Dispose();
        _closed.Dispose();
    }
}
