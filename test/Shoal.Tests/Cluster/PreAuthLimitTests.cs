using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Shoal.Cluster;
using Shoal.Protocol;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>What an unauthenticated peer can cost the leader: a handshake-sized frame, a bounded number of
/// connections, and five seconds for the whole handshake. Real workers still join meanwhile.</summary>
public sealed class PreAuthLimitTests : IDisposable
{
    private readonly TempDir _dir = new();

    private string Tasks(int n) => InProcessLeader.EchoTasks(_dir, n);

    [Fact]
    public async Task Handshake_MoreConnectionsWaitingThanTheCap_TheNextIsClosedAtOnce_AWorkerStillJoins()
    {
        await using var cluster = InProcessLeader.Start(_dir, Tasks(20));
        var run = cluster.Loop.RunAsync();
        var idle = new List<TcpClient>();
        try
        {
            for (var i = 0; i < LeaderServer.DefaultMaxPendingHandshakes; i++)
            {
                var c = new TcpClient();
                await c.ConnectAsync("127.0.0.1", cluster.Port);
                idle.Add(c);
            }

            await Eventually.True(() => cluster.Leader.PendingHandshakes == LeaderServer.DefaultMaxPendingHandshakes, "every idle connection accepted");
            using var extra = new TcpClient();
            await extra.ConnectAsync("127.0.0.1", cluster.Port);
            Assert.True(await Loopback.ClosedWithinAsync(extra.GetStream(), TimeSpan.FromSeconds(2)), "the connection over the cap was left open");
            // The leader closes the connection, then logs: the line may come a moment after the close is seen.
            await Eventually.True(() => cluster.Log.Any(l => l.Contains("too many connections in their handshake (64)", StringComparison.Ordinal)), "the refusal is logged");
            Assert.Equal(LeaderServer.DefaultMaxPendingHandshakes, cluster.Leader.PendingHandshakes);

            // A worker arriving now is refused too, and tries again until there is room.
            var worker = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", cluster.Port, cluster.Secret, "w", 2, [], _ => { }, CancellationToken.None));
            await Eventually.True(() => cluster.Leader.Rejected >= 2, "the worker's first try refused");
            foreach (var c in idle)
            {
                c.Dispose();
            }

            await Eventually.True(() => cluster.Loop.Progress.Succeeded > 0, "the worker joined and ran tasks");
            cluster.Loop.ExpectNoMoreWorkers();
            Assert.Equal(20, (await run.WaitAsync(TimeSpan.FromMinutes(1))).Succeeded);
            Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            foreach (var c in idle)
            {
                c.Dispose();
            }
        }
    }

    [Fact]
    public async Task Handshake_EachFrameInTimeButTheWholeTooSlow_ClosedAtTheHandshakeDeadline()
    {
        await using var cluster = InProcessLeader.Start(_dir, Tasks(1));
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", cluster.Port);
        var s = client.GetStream();
        var nonce = Handshake.NewNonce();
        var clock = Stopwatch.StartNew();
        await Frame.WriteAsync(s, MessageType.Hello, Handshake.EncodeHello(nonce), CancellationToken.None);
        var (serverNonce, _) = Handshake.DecodeChallenge((await Frame.ReadAsync(s, CancellationToken.None))!.Value.Payload);
        // Each step well inside 5 s, the handshake as a whole not: it must not get a Welcome even with the right secret.
        await Task.Delay(TimeSpan.FromSeconds(3));
        await Frame.WriteAsync(s, MessageType.Auth, Handshake.EncodeAuth(Handshake.Proof(cluster.Secret, "worker", serverNonce, nonce)), CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(5) - clock.Elapsed + TimeSpan.FromSeconds(0.5));
        (MessageType Type, byte[] Payload)? reply = null;
        try
        {
            await Frame.WriteAsync(s, MessageType.Register, new RegisterMessage("slow", 1, []).Encode(), CancellationToken.None);
            reply = await Frame.ReadAsync(s, CancellationToken.None);
        }
        catch (IOException)
        {
            // reset by the leader: closed
        }

        Assert.Null(reply);
        Assert.Contains(cluster.Log, l => l.Contains("no complete handshake within 5 s", StringComparison.Ordinal));
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>Measures allocations of the whole process: alone, so that no other test's allocations count.</summary>
[CollectionDefinition("alone", DisableParallelization = true)]
public sealed class AloneGroup;

[Collection("alone")]
public sealed class PreAuthMemoryTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task Handshake_FloodOfHugeLengthPrefixes_EachClosedBeforeItsBody_NoBodiesAllocated_AWorkerStillRuns()
    {
        const int flood = 48; // under the cap on waiting handshakes, so that every one is judged on its frame
        await using var cluster = InProcessLeader.Start(_dir, string.Concat(Enumerable.Range(0, 20).Select(_ => $"echo $SHOAL_TASK_ID >> {_dir.File("done.log")}\n")));
        var run = cluster.Loop.RunAsync();
        var before = GC.GetTotalAllocatedBytes(precise: true);

        var attackers = Enumerable.Range(0, flood).Select(_ => HugePrefixThenTrickleAsync(cluster.Port)).ToArray();
        var worker = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", cluster.Port, cluster.Secret, "w", 2, [], _ => { }, CancellationToken.None));
        var closed = await Task.WhenAll(attackers);

        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.All(closed, Assert.True);
        Assert.Equal(flood, cluster.Log.Count(l => l.Contains($"frame length {Frame.MaxLength} is outside 1..{LeaderServer.MaxHelloFrame}", StringComparison.Ordinal)));
        // Holding each body would be 48 x 4 MiB = 192 MiB.
        Assert.True(allocated < 32 << 20, $"the leader allocated {allocated >> 20} MiB during the flood");

        await Eventually.True(() => cluster.Loop.Progress.Succeeded > 0, "the worker joined and ran tasks");
        cluster.Loop.ExpectNoMoreWorkers();
        Assert.Equal(20, (await run.WaitAsync(TimeSpan.FromMinutes(1))).Succeeded);
        Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>Sends the length prefix of a maximal frame, then one byte every 50 ms; true once the leader has
    /// closed the connection (within 10 s).</summary>
    private static async Task<bool> HugePrefixThenTrickleAsync(int port)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        var s = client.GetStream();
        var prefix = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(prefix, Frame.MaxLength);
        await s.WriteAsync(prefix);
        var closed = Loopback.ClosedWithinAsync(s, TimeSpan.FromSeconds(10));
        try
        {
            while (!closed.IsCompleted)
            {
                await s.WriteAsync(new byte[] { (byte)MessageType.Hello });
                await Task.Delay(50);
            }
        }
        catch (IOException)
        {
            // the leader closed it
        }

        return await closed;
    }

    public void Dispose() => _dir.Dispose();
}
