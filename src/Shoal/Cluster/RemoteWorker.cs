using System.Threading.Channels;
using Shoal.Execution;
using Shoal.Protocol;

namespace Shoal.Cluster;

/// <summary>
/// The leader's handle on one worker: an <see cref="ITaskLauncher"/> whose launches and signals go over the wire.
/// Everything queued while a frame is being written goes out in the next frame, so dispatch batches by itself
/// under load. Exits coming back are posted to the run loop; a closed or silent connection reports the worker lost.
/// </summary>
public sealed class RemoteWorker : ITaskLauncher
{
    private readonly PeerConnection _connection;
    private readonly Action<TaskExit> _exitSink;
    private readonly Channel<object> _outbox = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
    private int _disposed;

    public RemoteWorker(int id, PeerConnection connection, Action<TaskExit> exitSink)
    {
        Id = id;
        _connection = connection;
        _exitSink = exitSink;
    }

    public int Id { get; }

    public void Launch(LaunchRequest request) => _outbox.Writer.TryWrite(request);

    public void Signal(int task, int signal) => _outbox.Writer.TryWrite((task, signal));

    /// <summary>Runs until the connection ends; returns why (null after a clean shutdown we asked for).</summary>
    public async Task<string?> RunAsync()
    {
        _connection.StartHeartbeat();
        var sending = Task.Run(SendLoopAsync);
        string? reason = null;
        try
        {
            while (true)
            {
                var frame = await _connection.ReceiveAsync().ConfigureAwait(false);
                if (frame is not { } f)
                {
                    reason = "closed the connection";
                    break;
                }

                if (f.Type != MessageType.Exits)
                {
                    throw new ProtocolException($"unexpected message type {(int)f.Type} from a worker");
                }

                foreach (var exit in ExitsMessage.Decode(f.Payload, Id))
                {
                    _exitSink(exit);
                }
            }
        }
        catch (Exception e) when (e is ProtocolException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            reason = e.Message;
        }

        _outbox.Writer.TryComplete();
        await sending.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _connection.DisposeAsync().ConfigureAwait(false);
        return Volatile.Read(ref _disposed) == 1 ? null : reason;
    }

    private async Task SendLoopAsync()
    {
        var batch = new List<LaunchRequest>();
        var reader = _outbox.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_connection.Closed).ConfigureAwait(false))
            {
                while (reader.TryRead(out var item))
                {
                    switch (item)
                    {
                        case LaunchRequest r:
                            batch.Add(r);
                            break;
                        case (int task, int signal):
                            await FlushAsync(batch).ConfigureAwait(false);
                            await _connection.SendAsync(MessageType.Signal, SignalMessage.Encode(task, signal)).ConfigureAwait(false);
                            break;
                        case MessageType.Shutdown:
                            await FlushAsync(batch).ConfigureAwait(false);
                            await _connection.SendAsync(MessageType.Shutdown, ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
                            return;
                    }
                }

                await FlushAsync(batch).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
        }
    }

    private async Task FlushAsync(List<LaunchRequest> batch)
    {
        if (batch.Count > 0)
        {
            await _connection.SendAsync(MessageType.Start, StartMessage.Encode(batch)).ConfigureAwait(false);
            batch.Clear();
        }
    }

    /// <summary>Tells the worker to finish (the run ended, or the loop gave up on it).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _outbox.Writer.TryWrite(MessageType.Shutdown);
            _outbox.Writer.TryComplete();
        }
    }
}
