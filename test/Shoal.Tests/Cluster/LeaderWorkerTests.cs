using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Shoal.Cluster;
using Shoal.Journal;
using Shoal.Protocol;
using Shoal.Running;
using Shoal.Tasks;
using Shoal.Tests.Support;

namespace Shoal.Tests.Cluster;

/// <summary>A real leader socket, real workers (in this process, running real tasks), and misbehaving clients, on localhost.</summary>
public sealed class LeaderWorkerTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task Run_TwoWorkers_BadClientsRejected_EveryTaskOnce()
    {
        var lines = string.Concat(Enumerable.Range(0, 40).Select(_ => $"echo $SHOAL_TASK_ID >> {_dir.File("done.log")}; sleep 0.02\n"));
        var tasks = TaskSources.FromTaskFile(Encoding.UTF8.GetBytes(lines), "t");
        var runDir = new RunDirectory(_dir.File("run"));
        runDir.Acquire();
        using var journal = RunJournal.Open(runDir.JournalPath, create: true);
        var session = journal.BeginSession(0, "test", 1, "test");
        using var writer = new JournalWriter(journal);
        var loop = new RunLoop(tasks, new RunOptions { Session = session }, journal, writer, TimeProvider.System);
        var allocation = new SlurmAllocation("1", ["a", "b"], [2, 2], 0, null, null);
        await using var leader = new SlurmLeader(allocation, loop, writer, runDir, session, "/bin/sh", quiet: true);
        leader.Listen();

        // Misbehaving clients first: none of them may disturb the run.
        await GarbageClient(leader.Port);
        await OversizedFrameClient(leader.Port);
        await WrongSecretClient(leader.Port, leader.Secret);
        await ReplayClient(leader.Port, leader.Secret);
        // Five: the replay attack abandons its first connection after the challenge, which counts too.
        await Eventually.True(() => leader.Rejected == 5, "five bad connections rejected");

        var impostorSecret = Handshake.NewSecret();
        Assert.Equal(WorkerAgent.LeaderLost, await WorkerAgent.RunAsync("127.0.0.1", leader.Port, impostorSecret, "impostor", 2, [], _ => { }, CancellationToken.None));

        var run = loop.RunAsync();
        var w1 = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", leader.Port, leader.Secret, "a", 2, [], _ => { }, CancellationToken.None));
        var w2 = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", leader.Port, leader.Secret, "b", 2, [], _ => { }, CancellationToken.None));
        await Eventually.True(() => loop.Progress.Succeeded > 0, "work started");
        await GarbageClient(leader.Port); // during the run too
        loop.ExpectNoMoreWorkers();
        var outcome = await run;
        writer.Complete();

        Assert.Equal(40, outcome.Succeeded);
        Assert.Equal(0, await w1);
        Assert.Equal(0, await w2);
        Assert.Equal(Enumerable.Range(1, 40), File.ReadAllLines(_dir.File("done.log")).Select(int.Parse).Order());
        Assert.Equal(2, journal.LatestAttempts([AttemptState.Succeeded]).Select(a => a.Worker).Distinct().Count());
    }

    [Fact]
    public async Task Run_WideWorkerAndLongCommands_StartBurstOverFrameLimit_EveryTaskRuns()
    {
        // 128 slots filled at once with ~100 KB commands: one dispatch of ~12.8 MB of Start requests. Sent as one
        // frame it would be over the 4 MiB limit; the old leader's send loop died on it and the run hung.
        var filler = new string('x', 100_000);
        var lines = string.Concat(Enumerable.Range(0, 300).Select(_ => $": {filler}; echo $SHOAL_TASK_ID >> {_dir.File("done.log")}\n"));
        await using var cluster = InProcessLeader.Start(_dir, lines);
        var run = cluster.Loop.RunAsync();
        var worker = Task.Run(() => WorkerAgent.RunAsync("127.0.0.1", cluster.Port, cluster.Secret, "wide", 128, [], _ => { }, CancellationToken.None));
        await Eventually.True(() => cluster.Loop.Progress.Succeeded > 0, "tasks started on the wide worker", 60_000);
        cluster.Loop.ExpectNoMoreWorkers();
        var outcome = await run.WaitAsync(TimeSpan.FromMinutes(2));
        cluster.Writer.Complete();

        Assert.Equal(300, outcome.Succeeded);
        Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(Enumerable.Range(1, 300).Select(i => i), File.ReadAllLines(_dir.File("done.log")).Select(int.Parse).Order());
    }

    private static async Task<NetworkStream> Connect(int port)
    {
        var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        return client.GetStream();
    }

    private static async Task AssertClosedByLeader(NetworkStream stream)
    {
        var buffer = new byte[1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            while (await stream.ReadAsync(buffer, timeout.Token) > 0)
            {
            }
        }
        catch (IOException)
        {
            // reset by the leader: also closed
        }
    }

    private static async Task GarbageClient(int port)
    {
        await using var s = await Connect(port);
        var junk = new byte[300];
        new Random(7).NextBytes(junk);
        await s.WriteAsync(junk);
        await AssertClosedByLeader(s);
    }

    private static async Task OversizedFrameClient(int port)
    {
        await using var s = await Connect(port);
        var header = new byte[5];
        BinaryPrimitives.WriteInt32BigEndian(header, int.MaxValue);
        await s.WriteAsync(header);
        await AssertClosedByLeader(s);
    }

    private static async Task WrongSecretClient(int port, byte[] secret)
    {
        await using var s = await Connect(port);
        var nonce = Handshake.NewNonce();
        await Frame.WriteAsync(s, MessageType.Hello, Handshake.EncodeHello(nonce), CancellationToken.None);
        var challenge = await Frame.ReadAsync(s, CancellationToken.None);
        Assert.Equal(MessageType.Challenge, challenge!.Value.Type);
        var (serverNonce, leaderProof) = Handshake.DecodeChallenge(challenge.Value.Payload);
        Assert.True(Handshake.Verify(Handshake.Proof(secret, "leader", nonce, serverNonce), leaderProof));
        var wrong = Handshake.Proof(Handshake.NewSecret(), "worker", serverNonce, nonce);
        await Frame.WriteAsync(s, MessageType.Auth, Handshake.EncodeAuth(wrong), CancellationToken.None);
        await AssertClosedByLeader(s);
    }

    /// <summary>A proof recorded from one connection, replayed on another: the new nonce makes it worthless.</summary>
    private static async Task ReplayClient(int port, byte[] secret)
    {
        byte[] recorded;
        byte[] clientNonce = Handshake.NewNonce();
        await using (var first = await Connect(port))
        {
            await Frame.WriteAsync(first, MessageType.Hello, Handshake.EncodeHello(clientNonce), CancellationToken.None);
            var (serverNonce, _) = Handshake.DecodeChallenge((await Frame.ReadAsync(first, CancellationToken.None))!.Value.Payload);
            recorded = Handshake.Proof(secret, "worker", serverNonce, clientNonce); // what an eavesdropper saw
        }

        await using var s = await Connect(port);
        await Frame.WriteAsync(s, MessageType.Hello, Handshake.EncodeHello(clientNonce), CancellationToken.None);
        _ = await Frame.ReadAsync(s, CancellationToken.None);
        await Frame.WriteAsync(s, MessageType.Auth, Handshake.EncodeAuth(recorded), CancellationToken.None);
        await AssertClosedByLeader(s);
    }

    public void Dispose() => _dir.Dispose();
}
