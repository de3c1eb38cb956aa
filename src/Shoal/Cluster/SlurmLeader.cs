using System.Net;
using Shoal.Execution;
using Shoal.Journal;
using Shoal.Protocol;
using Shoal.Running;

namespace Shoal.Cluster;

/// <summary>
/// Inside an allocation: listens for workers, starts them with one srun step (one task per node), and feeds the
/// run loop their joins and losses. The srun line and why:
/// <code>srun --nodes=N --ntasks=N --ntasks-per-node=1 [--cpus-per-task=C] [--gres=gpu:G] --kill-on-bad-exit=0 --overlap --input=all shoal worker --leader HOST:PORT</code>
/// one task per node; the step takes every CPU (and GPU) of the job on each node, because tasks run inside the
/// worker's cgroup where confinement is on (<c>--cpus-per-task=C</c> when all nodes have C CPUs; otherwise no
/// per-task request, and SLURM_CPUS_PER_TASK of the job is not passed on, so the step gets the whole node);
/// <c>--overlap</c> so the step neither waits for CPUs held by the batch step (where the leader runs) nor is refused
/// because of them; <c>--kill-on-bad-exit=0</c> so that one node's worker dying does not take the others down.
/// The secret travels on the step's stdin (<c>--input=all</c>: one line to every worker; see <see cref="RunSecret"/>),
/// never in an environment or on a command line.
/// With SHOAL_LEADER_ADDRESS set, the leader listens only on that address (on each address of that name) and gives it
/// to the workers. Without it, the workers are given this host's name and the leader listens on every IPv4 interface:
/// which of this host's addresses the nodes can reach (and what the name resolves to there) is not known here, and
/// a listener on one guessed address could leave every worker unable to connect.
/// </summary>
public sealed class SlurmLeader : IAsyncDisposable
{
    private readonly SlurmAllocation _allocation;
    private readonly RunLoop _loop;
    private readonly JournalWriter _writer;
    private readonly RunDirectory _runDir;
    private readonly int _session;
    private readonly string _shell;
    private readonly bool _quiet;
    private readonly byte[] _secret = Handshake.NewSecret();
    private readonly LeaderServer _server;
    private readonly string? _leaderAddress;
    private readonly Action<string> _log;
    private readonly TaskCompletionSource<(int Code, int Signal)> _srunExit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, (string Host, Task Ended)> _workers = new();
    private readonly HashSet<string> _released = [];
    private readonly SemaphoreSlim _shrinking = new(1, 1);
    private readonly List<Task> _releases = [];
    private readonly string _leaderNode = LocalMachine.NodeName(Environment.GetEnvironmentVariable);
    private int _nextWorker;
    private int _srunPid;
    private int _releasedCount;

    public SlurmLeader(SlurmAllocation allocation, RunLoop loop, JournalWriter writer, RunDirectory runDir, int session, string shell, bool quiet)
        : this(allocation, loop, writer, runDir, session, shell, quiet, Environment.GetEnvironmentVariable("SHOAL_LEADER_ADDRESS"), Log)
    {
    }

    internal SlurmLeader(SlurmAllocation allocation, RunLoop loop, JournalWriter writer, RunDirectory runDir, int session, string shell, bool quiet, string? leaderAddress, Action<string> log)
    {
        _allocation = allocation;
        _loop = loop;
        _writer = writer;
        _runDir = runDir;
        _session = session;
        _shell = shell;
        _quiet = quiet;
        _leaderAddress = string.IsNullOrWhiteSpace(leaderAddress) ? null : leaderAddress.Trim();
        _log = log;
        _server = new LeaderServer(_secret, ListenAddresses(_leaderAddress), 0, OnWorkerAsync, log);
        _loop.OnRelease = worker => _releases.Add(ReleaseSafelyAsync(worker));
    }

    /// <summary>The addresses to listen on: those of SHOAL_LEADER_ADDRESS (an address, or a name and all it resolves
    /// to), else every IPv4 interface.</summary>
    internal static IReadOnlyList<IPAddress> ListenAddresses(string? leaderAddress)
    {
        if (leaderAddress is null)
        {
            return [IPAddress.Any];
        }

        if (IPAddress.TryParse(leaderAddress, out var address))
        {
            return [address];
        }

        try
        {
            var all = Dns.GetHostAddresses(leaderAddress).Distinct().ToArray();
            return all.Length > 0 ? all : throw new JournalException($"SHOAL_LEADER_ADDRESS={leaderAddress} resolves to no address");
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new JournalException($"SHOAL_LEADER_ADDRESS={leaderAddress} does not resolve: {e.Message}");
        }
    }

    /// <summary>Connections that failed the handshake.</summary>
    public int Rejected => _server.Rejected;

    public static void Log(string message) => Console.Error.WriteLine($"shoal: {message}");

    internal byte[] Secret => _secret;

    internal int Port => _server.Port;

    public void Start()
    {
        // The secret is in our memory: tasks of this user on this node must not be able to read it from there.
        RunSecret.ProtectProcess();
        Listen();
        LaunchWorkers();
    }

    internal IReadOnlyList<IPEndPoint> LocalEndpoints => _server.LocalEndpoints;

    internal int PendingHandshakes => _server.PendingHandshakes;

    /// <summary>Opens the listening sockets (tests connect their own workers to them).</summary>
    internal void Listen()
    {
        try
        {
            _server.Start();
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new JournalException($"cannot listen on {_leaderAddress ?? "every interface"}: {e.Message}{(_leaderAddress is null ? "" : " (is SHOAL_LEADER_ADDRESS an address of this host?)")}");
        }
    }

    private void LaunchWorkers()
    {
        var leader = _leaderAddress ?? Environment.MachineName;
        var n = _allocation.Nodes.Count;
        var args = new List<string> { $"--nodes={n}", $"--ntasks={n}", "--ntasks-per-node=1", "--kill-on-bad-exit=0", "--overlap", "--input=all" };
        if (_allocation.CpusPerNode.Distinct().Count() == 1)
        {
            args.Add($"--cpus-per-task={_allocation.CpusPerNode[0]}");
        }

        if (_allocation.GpusPerNode > 0)
        {
            args.Add($"--gres=gpu:{_allocation.GpusPerNode}");
        }

        args.AddRange(SelfCommand());
        args.AddRange(["worker", "--leader", $"{leader}:{_server.Port}"]);
        var srun = ChildProcess.FindProgram("srun") ?? throw new JournalException("srun is not on PATH; inside a SLURM job it should be (or use --local)");
        if (!_quiet)
        {
            _log($"listening on {leader}:{_server.Port}; starting one worker per node: srun {string.Join(' ', args)}");
        }

        _srunPid = ChildProcess.Start(
            srun,
            args,
            [],
            ["SLURM_CPUS_PER_TASK", "SLURM_TRES_PER_TASK", "SLURM_NTASKS_PER_NODE", "SLURM_NTASKS", "SLURM_NPROCS"],
            (code, signal) =>
            {
                _srunExit.TrySetResult((code, signal));
                _loop.ExpectNoMoreWorkers();
            },
            stdin: RunSecret.ToLine(_secret));
        _ = WatchFirstWorkerAsync($"{leader}:{_server.Port}");
    }

    /// <summary>Workers that cannot reach the leader (a firewall, the wrong interface) would leave the run waiting
    /// for ever: give up after <see cref="FirstWorkerTimeout"/> with advice.</summary>
    private async Task WatchFirstWorkerAsync(string address)
    {
        if (await Task.WhenAny(_srunExit.Task, Task.Delay(FirstWorkerTimeout)).ConfigureAwait(false) == _srunExit.Task || Volatile.Read(ref _nextWorker) > 0)
        {
            return;
        }

        _log($"no worker connected within {FirstWorkerTimeout.TotalSeconds:0} s: can the nodes reach {address}? (SHOAL_LEADER_ADDRESS sets the address they are given); stopping");
        _loop.ExpectNoMoreWorkers();
        ChildProcess.Signal(_srunPid, Native.SIGTERM);
    }

    private static TimeSpan FirstWorkerTimeout { get; } = TimeSpan.FromSeconds(120);

    /// <summary>What each node runs around its tasks (none by default).</summary>
    public NodeStepPlan? Steps { get; init; }

    /// <summary>Whether workers start plain-word commands without the shell.</summary>
    public bool DirectExec { get; init; }

    /// <summary>Whether tasks (and node steps) get CUDA_VISIBLE_DEVICES.</summary>
    public bool ManageGpus { get; init; }

    /// <summary>Nodes whose setup failed (no task ran there) and nodes whose setup succeeded.</summary>
    public int SetupFailures => Volatile.Read(ref _setupFailures);

    private int _setupFailures;
    private int _setupsPassed;

    /// <summary>Nodes whose setup passed.</summary>
    public int SetupsPassed => Volatile.Read(ref _setupsPassed);
    private int _finishing;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, PeerConnection> _settingUp = new();

    private async Task OnWorkerAsync(RegisterMessage register, PeerConnection connection)
    {
        var id = Interlocked.Increment(ref _nextWorker);
        var prefix = $"w{id}-{register.Host}-";
        var steps = Steps is { Any: true } s ? s : null;
        try
        {
            var welcome = new WelcomeMessage(id, _runDir.LogDirectory(_session), prefix, _shell, _runDir.Path)
            {
                Session = _session,
                Setup = steps?.Setup ?? "",
                Teardown = steps?.Teardown ?? "",
                SetupTimeoutMs = (long)(steps?.SetupTimeout ?? TimeSpan.Zero).TotalMilliseconds,
                TeardownTimeoutMs = (long)(steps?.TeardownTimeout ?? TimeSpan.Zero).TotalMilliseconds,
                GraceMs = (long)(steps?.Grace ?? TimeSpan.Zero).TotalMilliseconds,
                ManageGpus = ManageGpus,
                DirectExec = DirectExec,
            };
            await connection.SendAsync(MessageType.Welcome, welcome.Encode()).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return;
        }

        // From here the worker is silent only while it sets up; our heartbeats tell it we are still here.
        connection.StartHeartbeat();
        _writer.Enqueue(j => j.AddWorker(_session, id, register.Host, register.Slots, string.Join(',', register.Gpus), prefix));
        if (!_quiet)
        {
            _log($"worker {id} on {register.Host}: {register.Slots} slots, {(register.Gpus.Length == 0 ? "no GPUs" : "GPUs " + string.Join(',', register.Gpus))}");
        }

        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _workers[id] = (register.Host, ended.Task);
        try
        {
            if (steps is not null)
            {
                _settingUp[id] = connection;
                if (Volatile.Read(ref _finishing) != 0)
                {
                    await TellToFinishAsync(connection).ConfigureAwait(false); // (FinishAsync may have told it too)
                }

                var ready = await SetUpAsync(id, register.Host, connection).ConfigureAwait(false);
                _settingUp.TryRemove(id, out _);
                if (!ready)
                {
                    return;
                }
            }

            var remote = new RemoteWorker(id, connection, _loop.ExitSink) { OnNodeStep = step => RecordStep(id, register.Host, step) };
            _loop.AddWorker(new WorkerInfo(id, register.Host, register.Slots, register.Gpus) { Releasable = register.Host != _leaderNode }, remote);
            var lost = await remote.RunAsync().ConfigureAwait(false);
            if (lost is not null)
            {
                _log($"worker {id} on {register.Host} lost: {lost}; its running tasks go back to the queue");
                _loop.LoseWorker(id);
            }
        }
        finally
        {
            ended.TrySetResult();
        }
    }

    /// <summary>Waits for the worker's setup report: true when tasks may go to it. A worker whose setup failed runs
    /// its teardown and leaves; its report is recorded, and its connection closed.</summary>
    private async Task<bool> SetUpAsync(int id, string host, PeerConnection connection)
    {
        NodeStepResult setup;
        try
        {
            // A worker setting up sends heartbeats: silence still means it is gone.
            var frame = await connection.ReceiveAsync().ConfigureAwait(false) ?? throw new ProtocolException("closed the connection during its node setup");
            setup = frame.Type == MessageType.NodeStep ? NodeStepMessage.Decode(frame.Payload) : throw new ProtocolException($"unexpected message type {(int)frame.Type} before its setup report");
            if (setup.Step == NodeStep.Teardown)
            {
                // The run ended during its setup (FinishAsync told it to stop): it tore down and leaves.
                RecordStep(id, host, setup);
                await connection.DisposeAsync().ConfigureAwait(false);
                return false;
            }
        }
        catch (Exception e) when (e is ProtocolException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            if (Volatile.Read(ref _finishing) == 0)
            {
                _log($"worker {id} on {host} lost during its node setup: {connection.CloseReason ?? e.Message}");
            }

            await connection.DisposeAsync().ConfigureAwait(false);
            return false;
        }

        if (setup.Log.Length > 0 || setup.Error is not null)
        {
            RecordStep(id, host, setup);
        }

        if (setup.Succeeded)
        {
            Interlocked.Increment(ref _setupsPassed);
            return true;
        }

        if (setup.Error != NodeStepResult.Stopped)
        {
            Interlocked.Increment(ref _setupFailures);
        }

        try
        {
            // Its teardown comes next (it ran its setup), then it closes.
            while (await connection.ReceiveAsync().ConfigureAwait(false) is { } frame)
            {
                if (frame.Type == MessageType.NodeStep && NodeStepMessage.Decode(frame.Payload) is { Step: NodeStep.Teardown } teardown)
                {
                    RecordStep(id, host, teardown);
                }
            }
        }
        catch (Exception e) when (e is ProtocolException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // It is gone; what it reported is recorded.
        }

        await connection.DisposeAsync().ConfigureAwait(false);
        return false;
    }

    private static async Task TellToFinishAsync(PeerConnection connection)
    {
        try
        {
            await connection.SendAsync(MessageType.Shutdown, ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Gone already.
        }
    }

    private void RecordStep(int id, string host, NodeStepResult step)
    {
        _writer.Enqueue(j => j.AddNodeStep(_session, id, host, step));
        var what = step.Step == NodeStep.Setup ? "setup" : "teardown";
        if (step.Error == NodeStepResult.Stopped)
        {
            _log($"node {what} on {host} stopped: the run ended");
        }
        else if (step.FailureMessage(host) is { } failure)
        {
            _log(failure);
        }
        else if (!_quiet)
        {
            _log($"node {what} on {host}: {step.Describe()}");
        }
    }

    /// <summary>Hands a released worker's node back to SLURM: once the worker has ended (it was told to shut down),
    /// the job is shrunk to the nodes it still needs (<c>scontrol update JobId=… NodeList=…</c>). The workers share
    /// one srun step; SLURM keeps the step running on the other nodes when the node it drops has no process of it
    /// left. One shrink at a time, each naming every node kept.</summary>
    private async Task ReleaseSafelyAsync(int worker)
    {
        try
        {
            await ReleaseAsync(worker).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or ObjectDisposedException)
        {
            _log($"could not hand back the node of worker {worker}: {e.Message}");
        }
    }

    private async Task ReleaseAsync(int worker)
    {
        if (!_workers.TryGetValue(worker, out var w))
        {
            return;
        }

        var wait = TimeSpan.FromSeconds(10) + TeardownWait;
        if (await Task.WhenAny(w.Ended, Task.Delay(wait)).ConfigureAwait(false) != w.Ended)
        {
            _log($"worker {worker} on {w.Host} did not end within {wait.TotalSeconds:0} s of its shutdown; its node is kept");
            return;
        }

        // Its connection closed as the worker process exits; give slurmstepd a moment to see the task end, or the
        // shrink would kill it (and srun would report the step as force-terminated).
        await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        await _shrinking.WaitAsync().ConfigureAwait(false);
        try
        {
            _released.Add(w.Host);
            var keep = _allocation.Nodes.Where(n => !_released.Contains(n)).ToList();
            System.IO.Directory.CreateDirectory(_runDir.JobsDirectory);
            var error = await SlurmJob.ShrinkAsync(_allocation.JobId, keep, _runDir.JobsDirectory, Path.Combine(_runDir.JobsDirectory, $".scontrol-{Environment.ProcessId}")).ConfigureAwait(false);
            if (error is not null)
            {
                _released.Remove(w.Host);
            }

            Volatile.Write(ref _releasedCount, _released.Count);

            var at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            _writer.Enqueue(j => j.AddRelease(_session, worker, w.Host, at, error));
            if (error is not null || !_quiet)
            {
                _log(error is null ? $"node {w.Host} handed back to SLURM (nothing left for it to run); the job keeps {Hostlist.Compress(keep)}" : $"could not hand node {w.Host} back: {error}");
            }
        }
        finally
        {
            _shrinking.Release();
        }
    }

    /// <summary>How long a worker may take to end after its shutdown, beyond the usual: its teardown and its grace.</summary>
    private TimeSpan TeardownWait => Steps is not { Any: true } steps ? TimeSpan.Zero : NodeSteps.Bounded((steps.Teardown is null ? TimeSpan.Zero : steps.TeardownTimeout) + (3 * steps.Grace));

    /// <summary>Nodes handed back so far.</summary>
    public int Released => Volatile.Read(ref _releasedCount);

    /// <summary>After the loop ended (workers were told to shut down): waits for the step, then ends it.</summary>
    public async Task FinishAsync(bool waitForReleases = true)
    {
        // Workers still setting up get no task any more: they stop their setup, tear down and leave.
        Volatile.Write(ref _finishing, 1);
        foreach (var connection in _settingUp.Values)
        {
            await TellToFinishAsync(connection).ConfigureAwait(false);
        }

        if (waitForReleases)
        {
            await Task.WhenAll(_releases).ConfigureAwait(false); // after a stop, SLURM's KILL may be near: no waiting
        }
        if (_srunPid == 0)
        {
            return;
        }

        if (Steps is { Any: true })
        {
            // The workers run their teardown after their last task (one stopped in its setup first stops that),
            // then report it and end: their reports must reach the journal before it closes.
            var all = Task.WhenAll(_workers.Values.Select(w => w.Ended));
            await Task.WhenAny(all, Task.Delay(TeardownWait + TimeSpan.FromSeconds(10))).ConfigureAwait(false);
        }

        if (await Task.WhenAny(_srunExit.Task, Task.Delay(TimeSpan.FromSeconds(10))).ConfigureAwait(false) != _srunExit.Task)
        {
            ChildProcess.Signal(_srunPid, Native.SIGTERM);
            if (await Task.WhenAny(_srunExit.Task, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false) != _srunExit.Task)
            {
                ChildProcess.Signal(_srunPid, Native.SIGKILL);
            }
        }
    }

    /// <summary>How to start this shoal again: its binary, or the dotnet host and shoal.dll under tests.</summary>
    public static string[] SelfCommand()
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell where the shoal binary is");
        // Under `dotnet shoal.dll` (tests, dotnet run) the process is the dotnet host.
        return Path.GetFileNameWithoutExtension(self) == "dotnet" ? [self, Path.Combine(AppContext.BaseDirectory, "shoal.dll")] : [self];
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync().ConfigureAwait(false);
}
