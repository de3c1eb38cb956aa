using System.Collections.Concurrent;
using System.Threading.Channels;
using Shoal.Execution;
using Shoal.Protocol;

namespace Shoal.Cluster;

/// <summary>
/// The leader's handle on one worker: an <see cref="ITaskLauncher"/> whose launches and signals go over the wire.
/// Everything queued while a frame is being written goes out in the next frames (each at most
/// <see cref="MaxStartPayload"/> bytes), so dispatch batches by itself under load. Exits coming back are posted to the
/// run loop, but only for attempts sent to this worker and not yet ended, on the lane they were sent to, each once:
/// anything else is a protocol error that drops the worker. Any failure to send closes the connection. A closed or
/// silent connection, or a dropped worker, reports the worker lost.
/// </summary>
public sealed class RemoteWorker : ITaskLauncher
{
    /// <summary>Start frames stay far below <see cref="Frame.MaxLength"/>; one request always fits, since a command is
    /// below 128 KiB (<see cref="Tasks.TaskSources.MaxCommandBytes"/>).</summary>
    public const int MaxStartPayload = 1 << 20;

    private readonly PeerConnection _connection;
    private readonly Action<TaskExit> _exitSink;
    private readonly Channel<object> _outbox = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>(task, attempt) -> lane of every launch sent and not yet ended: what an exit must match.</summary>
    private readonly ConcurrentDictionary<(int Task, int Attempt), int> _sent = new();
    private int _disposed;

    public RemoteWorker(int id, PeerConnection connection, Action<TaskExit> exitSink)
    {
        Id = id;
        _connection = connection;
        _exitSink = exitSink;
    }

    public int Id { get; }

    /// <summary>Called (on the receive loop) with the worker's teardown report, once.</summary>
    public Action<NodeStepResult>? OnNodeStep { get; init; }

    private bool _toreDown;

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

                if (f.Type == MessageType.NodeStep && !_toreDown && NodeStepMessage.Decode(f.Payload) is { Step: NodeStep.Teardown } teardown)
                {
                    _toreDown = true;
                    OnNodeStep?.Invoke(teardown);
                    continue;
                }

                if (f.Type != MessageType.Exits)
                {
                    throw new ProtocolException($"unexpected message type {(int)f.Type} from a worker");
                }

                var exits = ExitsMessage.Decode(f.Payload, Id);
                foreach (var exit in exits)
                {
                    Accept(exit);
                }

                foreach (var exit in exits)
                {
                    _exitSink(exit);
                }
            }
        }
        catch (Exception e) when (e is ProtocolException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            reason = e.Message;
        }

        // Closed under the receive loop: by a failed send (of the send loop or the heartbeat), which is the reason.
        if (_connection.Closed.IsCancellationRequested && _connection.CloseReason is { } failure)
        {
            reason = failure;
        }

        _connection.Close();
        _outbox.Writer.TryComplete();
        await sending.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _connection.DisposeAsync().ConfigureAwait(false);

        return Volatile.Read(ref _disposed) == 1 ? null : reason;
    }

    /// <summary>An exit is believed only for an attempt this worker was sent, on its lane, once. A worker that reports
    /// anything else is broken or hostile; its results cannot be trusted, so none of this frame's is used.</summary>
    private void Accept(TaskExit exit)
    {
        if (!_sent.TryRemove((exit.Task, exit.Attempt), out var lane))
        {
            throw new ProtocolException($"the worker reported an end of task {exit.Task} attempt {exit.Attempt}, which it was not running");
        }

        if (lane != exit.Lane)
        {
            throw new ProtocolException($"the worker reported task {exit.Task} attempt {exit.Attempt} on lane {exit.Lane}; it was started on lane {lane}");
        }
    }

    private async Task SendLoopAsync()
    {
        var batch = new List<LaunchRequest>();
        var batchBytes = 0;
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
                            var size = StartMessage.EncodedSize(r);
                            if (batch.Count > 0 && batchBytes + size > MaxStartPayload)
                            {
                                await FlushAsync(batch).ConfigureAwait(false);
                                batchBytes = 0;
                            }

                            batch.Add(r);
                            batchBytes += size;
                            break;
                        case (int task, int signal):
                            await FlushAsync(batch).ConfigureAwait(false);
                            batchBytes = 0;
                            await _connection.SendAsync(MessageType.Signal, SignalMessage.Encode(task, signal)).ConfigureAwait(false);
                            break;
                        case MessageType.Shutdown:
                            await FlushAsync(batch).ConfigureAwait(false);
                            await _connection.SendAsync(MessageType.Shutdown, ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
                            return;
                    }
                }

                await FlushAsync(batch).ConfigureAwait(false);
                batchBytes = 0;
            }
        }
        catch (OperationCanceledException) when (_connection.Closed.IsCancellationRequested)
        {
            // The connection ended (the receive side saw it first): nothing more to send.
        }
#pragma warning disable CA1031 // Any failure, whatever its type, must end the connection rather than leave it half alive.
        catch (Exception e)
#pragma warning restore CA1031
        {
            _connection.Close($"sending to it failed: {e.Message}");
        }
    }

    private async Task FlushAsync(List<LaunchRequest> batch)
    {
        if (batch.Count > 0)
        {
            // Recorded before the frame leaves: an honest worker cannot answer before it has read it.
            foreach (var r in batch)
            {
                _sent[(r.Task, r.Attempt)] = r.Lane;
            }

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
