using System.Net.Sockets;
using Shoal.Cluster;
using Shoal.Execution;
using Shoal.Protocol;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>The leader's side of one worker connection, against a scripted worker on the other end of a real socket.</summary>
public sealed class RemoteWorkerTests
{
    private static LaunchRequest Request(int task, int commandBytes, int lane = 0) =>
        new(task, task + 1, 1, new byte[commandBytes], lane, 1, null);

    [Fact]
    public async Task Launch_BurstFarOverTheFrameLimit_GoesOutInFramesUnder1MiB_EveryRequestArrives()
    {
        var (server, client) = await Loopback.PairAsync();
        using var _ = client;
        var worker = new RemoteWorker(1, new PeerConnection(server), _ => { });
        // 64 x 100 KB queued before the send loop starts: all of it is one burst (6.4 MB, over the 4 MiB frame limit).
        for (var i = 0; i < 64; i++)
        {
            worker.Launch(Request(i, 100_000, lane: i));
        }

        var running = worker.RunAsync();
        var stream = client.GetStream();
        var received = new List<LaunchRequest>();
        var frames = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (received.Count < 64)
        {
            var frame = await Frame.ReadAsync(stream, timeout.Token);
            Assert.NotNull(frame);
            if (frame.Value.Type == MessageType.Heartbeat)
            {
                continue;
            }

            Assert.Equal(MessageType.Start, frame.Value.Type);
            Assert.True(frame.Value.Payload.Length <= RemoteWorker.MaxStartPayload, $"a Start frame of {frame.Value.Payload.Length} bytes");
            received.AddRange(StartMessage.Decode(frame.Value.Payload));
            frames++;
        }

        Assert.Equal(Enumerable.Range(0, 64), received.Select(r => r.Task));
        Assert.InRange(frames, 7, 64);
        worker.Dispose();
        client.Close();
        Assert.Null(await running.WaitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task SendFailure_ClosesTheConnection_AndRunAsyncReportsTheWorkerLost()
    {
        var (server, client) = await Loopback.PairAsync();
        using var _ = client;
        var worker = new RemoteWorker(1, new PeerConnection(server), _ => { });
        // One request that no frame can hold (the task-file limit would never let one through: this is the
        // stand-in for any send failure).
        worker.Launch(Request(0, Frame.MaxLength));
        var running = worker.RunAsync();
        using var heartbeats = new CancellationTokenSource();
        var beating = KeepBeatingAsync(client.GetStream(), heartbeats.Token);

        var reason = await running.WaitAsync(TimeSpan.FromSeconds(8)); // well under the 10 s silence timeout
        await heartbeats.CancelAsync();
        await beating;
        Assert.NotNull(reason);
        Assert.Contains("sending Start failed", reason, StringComparison.Ordinal);
        Assert.True(await Loopback.ClosedWithinAsync(client.GetStream(), TimeSpan.FromSeconds(5)));
    }

    /// <summary>A worker that stays audibly alive: heartbeats must not keep a connection whose sends fail.</summary>
    private static async Task KeepBeatingAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await Frame.WriteAsync(stream, MessageType.Heartbeat, ReadOnlyMemory<byte>.Empty, cancellationToken);
                await Task.Delay(200, cancellationToken);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }
}
