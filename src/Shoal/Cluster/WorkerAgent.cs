using System.Net.Sockets;
using System.Threading.Channels;
using Shoal.Execution;
using Shoal.Protocol;

namespace Shoal.Cluster;

/// <summary>
/// <c>shoal worker</c>: connects to the leader, proves it knows the run's secret (and checks that the leader does),
/// offers this node's slots and GPUs, then runs what it is sent with the same <see cref="ProcessLauncher"/> as
/// single-machine mode. If the leader goes away or falls silent, it kills every task it started and exits: no
/// orphans on the node.
/// </summary>
public static class WorkerAgent
{
    public const int LeaderLost = 3;

    /// <summary>How long the worker keeps trying to reach the leader (connect refused, or closed before its challenge
    /// because too many connections were waiting for their handshake there).</summary>
    private static readonly TimeSpan JoinDeadline = TimeSpan.FromSeconds(60);

    /// <summary>Enough for a challenge (two 32-byte values and their lengths).</summary>
    private const int MaxChallengeFrame = 1024;

    /// <summary>Enough for a welcome: an id, four paths, and the node setup and teardown commands (each below
    /// 128 KiB, <see cref="Tasks.TaskSources.MaxCommandBytes"/>).</summary>
    internal const int MaxWelcomeFrame = (2 * Tasks.TaskSources.MaxCommandBytes) + (64 << 10);

    public static async Task<int> RunAsync(string host, int port, byte[] secret, string nodeName, int slots, IReadOnlyList<string> gpus, Action<string> log, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(log);
        var joined = await JoinAsync(host, port, secret, nodeName, slots, gpus, log, cancellationToken).ConfigureAwait(false);
        if (joined is not var (connection, welcome))
        {
            return LeaderLost;
        }

        await using var _ = connection.ConfigureAwait(false);
        return await ServeAsync(connection, welcome, nodeName, slots, gpus, log).ConfigureAwait(false);
    }

    /// <summary>Connects and passes the handshake; null (after logging why) when that failed.</summary>
    private static async Task<(PeerConnection, WelcomeMessage)?> JoinAsync(string host, int port, byte[] secret, string nodeName, int slots, IReadOnlyList<string> gpus, Action<string> log, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + JoinDeadline;
        while (true)
        {
            var connection = new PeerConnection(await ConnectAsync(host, port, deadline, cancellationToken).ConfigureAwait(false));
            var challenged = false;
            try
            {
                var clientNonce = Handshake.NewNonce();
                await connection.SendAsync(MessageType.Hello, Handshake.EncodeHello(clientNonce)).ConfigureAwait(false);
                var challenge = await connection.ReceiveAsync(maxLength: MaxChallengeFrame).ConfigureAwait(false) ?? throw new ProtocolException("the leader closed the connection during the handshake");
                challenged = true;
                if (challenge.Type != MessageType.Challenge)
                {
                    throw new ProtocolException("the leader did not send a challenge");
                }

                var (serverNonce, leaderProof) = Handshake.DecodeChallenge(challenge.Payload);
                if (!Handshake.Verify(Handshake.Proof(secret, "leader", clientNonce, serverNonce), leaderProof))
                {
                    throw new ProtocolException("the leader failed authentication: it does not know this run's secret");
                }

                await connection.SendAsync(MessageType.Auth, Handshake.EncodeAuth(Handshake.Proof(secret, "worker", serverNonce, clientNonce))).ConfigureAwait(false);
                await connection.SendAsync(MessageType.Register, new RegisterMessage(nodeName, slots, [.. gpus]).Encode()).ConfigureAwait(false);
                var reply = await connection.ReceiveAsync(maxLength: MaxWelcomeFrame).ConfigureAwait(false) ?? throw new ProtocolException("the leader closed the connection (authentication refused?)");
                var welcome = reply.Type == MessageType.Welcome ? WelcomeMessage.Decode(reply.Payload) : throw new ProtocolException("expected Welcome");
                return (connection, welcome);
            }
            catch (Exception e) when (e is ProtocolException or IOException or SocketException or OperationCanceledException)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                if (!challenged && DateTime.UtcNow < deadline && !cancellationToken.IsCancellationRequested)
                {
                    // Closed before the leader said anything: it may be refusing connections for a moment (too many
                    // handshakes in progress there). Nothing was proven yet, so trying again gives nothing away.
                    await Task.Delay(500, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                log($"handshake with {host}:{port} failed: {e.Message}");
                return null;
            }
        }
    }

    /// <summary>Exit code of a worker whose node setup failed (no task ran on it).</summary>
    public const int SetupFailed = 4;

    private static async Task<int> ServeAsync(PeerConnection connection, WelcomeMessage welcome, string node, int slots, IReadOnlyList<string> gpus, Action<string> log)
    {
        connection.StartHeartbeat();
        using var nodeSession = new NodeSession(welcome.Steps, welcome.RunDir, welcome.Session, node, slots, gpus, welcome.ManageGpus, welcome.LogDirectory, welcome.LogPrefix);

        // The setup runs before any task; meanwhile the leader may only stop us (a shutdown, or it is gone).
        var firstFrame = connection.ReceiveAsync();
        if (welcome.Steps.Any)
        {
            using var stopSetup = new CancellationTokenSource();
            var setupTask = nodeSession.SetupAsync(stopSetup.Token);
            if (await Task.WhenAny(setupTask, firstFrame).ConfigureAwait(false) != setupTask)
            {
                await stopSetup.CancelAsync().ConfigureAwait(false);
                var cut = await setupTask.ConfigureAwait(false);
                await ((Task)firstFrame).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                var shutdown = firstFrame.IsCompletedSuccessfully && firstFrame.Result is { Type: MessageType.Shutdown };
                log(shutdown ? "the run ended during the node setup" : $"lost the leader during the node setup ({connection.CloseReason ?? "closed"})");
                if (shutdown && cut is not null)
                {
                    try
                    {
                        await connection.SendAsync(MessageType.NodeStep, NodeStepMessage.Encode(cut)).ConfigureAwait(false); // "stopped"
                    }
                    catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
                    {
                        // The leader is gone too; the teardown below runs all the same.
                    }
                }

                await TeardownAsync(nodeSession, shutdown ? connection : null, log).ConfigureAwait(false);
                return shutdown ? 0 : LeaderLost;
            }

            var setup = await setupTask.ConfigureAwait(false);
            if (nodeSession.LeftoversEnded > 0)
            {
                log($"ended {nodeSession.LeftoversEnded} process(es) that node steps of an earlier, killed session left running here");
            }

            try
            {
                // Always a report, also without a setup command: it says the node lock is ours, tasks may come.
                var report = setup ?? new NodeStepResult(NodeStep.Setup, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), 0, 0, false, "", "", null);
                await connection.SendAsync(MessageType.NodeStep, NodeStepMessage.Encode(report)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                log($"lost the leader during the node setup ({e.Message})");
                await TeardownAsync(nodeSession, null, log).ConfigureAwait(false);
                return LeaderLost;
            }

            if (setup is { Succeeded: false })
            {
                log($"node setup failed ({setup.Describe()}); no task runs here. Its output: {setup.Log}");
                await TeardownAsync(nodeSession, connection, log).ConfigureAwait(false);
                return SetupFailed;
            }
        }

        var exits = Channel.CreateUnbounded<TaskExit>(new UnboundedChannelOptions { SingleReader = true });
        var launcher = new ProcessLauncher(
            new ProcessLauncherOptions(welcome.Shell, welcome.LogDirectory, slots, [new("SHOAL_RUN_DIR", welcome.RunDir), new("SHOAL_NODE", node)], welcome.LogPrefix, Math.Clamp(Environment.ProcessorCount / 2, 1, 8)) { DirectExec = welcome.DirectExec },
            exit => exits.Writer.TryWrite(exit));
        var sender = Task.Run(async () =>
        {
            var batch = new List<TaskExit>();
            try
            {
                while (await exits.Reader.WaitToReadAsync(connection.Closed).ConfigureAwait(false))
                {
                    // 10,000 exits of 72 bytes: well under the frame limit.
                    while (batch.Count < 10_000 && exits.Reader.TryRead(out var e))
                    {
                        batch.Add(e);
                    }

                    await connection.SendAsync(MessageType.Exits, ExitsMessage.Encode(batch)).ConfigureAwait(false);
                    batch.Clear();
                }
            }
            catch (OperationCanceledException) when (connection.Closed.IsCancellationRequested)
            {
                // The connection ended; the receive loop below reports it.
            }
#pragma warning disable CA1031 // Any failure must end the connection: exits that cannot reach the leader leave it waiting for ever.
            catch (Exception e)
#pragma warning restore CA1031
            {
                connection.Close($"cannot send exits: {e.Message}");
            }
        }, CancellationToken.None);

        var code = 0;
        try
        {
            var pending = firstFrame;
            while (true)
            {
                var frame = await (pending ?? connection.ReceiveAsync()).ConfigureAwait(false) ?? throw new ProtocolException("the leader closed the connection");
                pending = null;
                switch (frame.Type)
                {
                    case MessageType.Start:
                        foreach (var request in StartMessage.Decode(frame.Payload))
                        {
                            if (request.Lane >= slots)
                            {
                                throw new ProtocolException($"the leader asked for lane {request.Lane} of {slots}");
                            }

                            launcher.Launch(request);
                        }

                        break;
                    case MessageType.Signal:
                        var (task, signal) = SignalMessage.Decode(frame.Payload);
                        launcher.Signal(task, signal);
                        break;
                    case MessageType.Shutdown:
                        return code;
                    default:
                        throw new ProtocolException($"unexpected message type {(int)frame.Type} from the leader");
                }
            }
        }
        catch (Exception e) when (e is ProtocolException or IOException or SocketException or OperationCanceledException)
        {
            log($"lost the leader ({connection.CloseReason ?? e.Message}); killing this node's tasks");
            code = LeaderLost;
            return code;
        }
        finally
        {
            // Start nothing that is still queued in the spawner threads, and end what runs: no unrecorded orphans.
            launcher.Abort();

            exits.Writer.TryComplete();
            if (code == 0)
            {
                // Clean shutdown: let the last exits reach the leader before closing.
                await sender.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            launcher.Dispose();

            // After the node's last task (also when the leader is gone: the node is cleaned up all the same).
            await TeardownAsync(nodeSession, code == 0 ? connection : null, log).ConfigureAwait(false);
        }
    }

    /// <summary>Runs the node's teardown (if it has one) and reports it to the leader when there is one to tell.</summary>
    private static async Task TeardownAsync(NodeSession nodeSession, PeerConnection? leader, Action<string> log)
    {
        if (await nodeSession.TeardownAsync(CancellationToken.None).ConfigureAwait(false) is not { } teardown)
        {
            return;
        }

        if (!teardown.Succeeded)
        {
            log($"node teardown failed ({teardown.Describe()}). Its output: {teardown.Log}");
        }

        if (leader is null)
        {
            return;
        }

        try
        {
            await leader.SendAsync(MessageType.NodeStep, NodeStepMessage.Encode(teardown)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            log($"cannot report the node teardown to the leader: {e.Message}");
        }
    }

    private static async Task<TcpClient> ConnectAsync(string host, int port, DateTime deadline, CancellationToken cancellationToken)
    {
        while (true)
        {
            var client = new TcpClient();
            try
            {
                await client.ConnectAsync(host, port, cancellationToken).ConfigureAwait(false);
                return client;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                client.Dispose();
                await Task.Delay(500, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }
    }
}
