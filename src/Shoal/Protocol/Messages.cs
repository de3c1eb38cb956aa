using Shoal.Execution;

namespace Shoal.Protocol;

/// <summary>A worker's offer after authentication.</summary>
public sealed record RegisterMessage(string Host, int Slots, string[] Gpus)
{
    public ReadOnlyMemory<byte> Encode()
    {
        var w = new PayloadWriter().String(Host).Int(Slots).Int(Gpus.Length);
        foreach (var g in Gpus)
        {
            w.String(g);
        }

        return w.Written;
    }

    public static RegisterMessage Decode(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var host = r.String();
        var slots = r.Int();
        var n = r.Int();
        if (slots is < 1 or > 1_000_000 || n is < 0 or > 4096)
        {
            throw new ProtocolException("implausible slot or GPU count");
        }

        var gpus = new string[n];
        for (var i = 0; i < n; i++)
        {
            gpus[i] = r.String();
        }

        r.End();
        return new RegisterMessage(host, slots, gpus);
    }
}

/// <summary>The leader's answer: who the worker is, where its output goes, and what the node runs around its tasks
/// (empty commands: none).</summary>
public sealed record WelcomeMessage(int WorkerId, string LogDirectory, string LogPrefix, string Shell, string RunDir)
{
    public int Session { get; init; } = 1;

    public string Setup { get; init; } = "";

    public string Teardown { get; init; } = "";

    public long SetupTimeoutMs { get; init; }

    public long TeardownTimeoutMs { get; init; }

    public long GraceMs { get; init; }

    public bool ManageGpus { get; init; }

    public bool DirectExec { get; init; }

    /// <summary>The node steps of this welcome, run with <see cref="Shell"/>.</summary>
    public NodeStepPlan Steps => new(
        Shell,
        Setup.Length == 0 ? null : Setup,
        Teardown.Length == 0 ? null : Teardown,
        TimeSpan.FromMilliseconds(SetupTimeoutMs),
        TimeSpan.FromMilliseconds(TeardownTimeoutMs),
        TimeSpan.FromMilliseconds(GraceMs));

    public ReadOnlyMemory<byte> Encode() =>
        new PayloadWriter().Int(WorkerId).String(LogDirectory).String(LogPrefix).String(Shell).String(RunDir)
            .Int(Session).String(Setup).String(Teardown).Long(SetupTimeoutMs).Long(TeardownTimeoutMs).Long(GraceMs).Int((ManageGpus ? 1 : 0) | (DirectExec ? 2 : 0)).Written;

    public static WelcomeMessage Decode(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var m = new WelcomeMessage(r.Int(), r.String(), r.String(), r.String(), r.String())
        {
            Session = r.Int(),
            Setup = r.String(),
            Teardown = r.String(),
            SetupTimeoutMs = r.Long(),
            TeardownTimeoutMs = r.Long(),
            GraceMs = r.Long(),
        };
        var flags = r.Int();
        m = m with { ManageGpus = (flags & 1) != 0, DirectExec = (flags & 2) != 0 };
        r.End();
        if (m.SetupTimeoutMs < 0 || m.TeardownTimeoutMs < 0 || m.GraceMs < 0)
        {
            throw new ProtocolException("negative step timeout");
        }

        return m;
    }
}

/// <summary>A node's setup or teardown ended (worker to leader). A setup report with an empty log means no setup
/// command ran (there is none: the worker only took its node lock).</summary>
public static class NodeStepMessage
{
    public static ReadOnlyMemory<byte> Encode(NodeStepResult step)
    {
        ArgumentNullException.ThrowIfNull(step);
        return new PayloadWriter().Int((int)step.Step).Long(step.StartUnixMs).Long(step.DurationMs).Int(step.Status).Int(step.TimedOut ? 1 : 0)
            .String(step.Log).String(step.Tail).Int(step.Error is null ? 0 : 1).String(step.Error ?? "").Written;
    }

    public static NodeStepResult Decode(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var step = r.Int();
        if (step is not (0 or 1))
        {
            throw new ProtocolException($"unknown node step {step}");
        }

        var (start, duration, status, timedOut, log, tail, hasError, error) = (r.Long(), r.Long(), r.Int(), r.Int() != 0, r.String(), r.String(), r.Int() != 0, r.String());
        r.End();
        return new NodeStepResult((NodeStep)step, start, Math.Max(0, duration), status, timedOut, log, tail, hasError ? error : null);
    }
}

/// <summary>Tasks to start, batched.</summary>
public static class StartMessage
{
    /// <summary>The bytes <paramref name="request"/> adds to a Start payload (which also has a 4-byte count).</summary>
    public static int EncodedSize(LaunchRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var size = (7 * 4) + request.Command.Length;
        foreach (var g in request.Gpus ?? [])
        {
            size += 4 + System.Text.Encoding.UTF8.GetByteCount(g);
        }

        return size;
    }

    public static ReadOnlyMemory<byte> Encode(IReadOnlyList<LaunchRequest> requests)
    {
        var w = new PayloadWriter().Int(requests.Count);
        foreach (var q in requests)
        {
            w.Int(q.Task).Int(q.TaskId).Int(q.Attempt).Int(q.Lane).Int(q.Cpus).Int(q.Gpus is null ? -1 : q.Gpus.Length);
            foreach (var g in q.Gpus ?? [])
            {
                w.String(g);
            }

            w.Bytes(q.Command);
        }

        return w.Written;
    }

    public static List<LaunchRequest> Decode(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var n = r.Int();
        if (n < 0 || n > payload.Length)
        {
            throw new ProtocolException("bad task count");
        }

        var list = new List<LaunchRequest>(n);
        for (var i = 0; i < n; i++)
        {
            int task = r.Int(), id = r.Int(), attempt = r.Int(), lane = r.Int(), cpus = r.Int(), gpuCount = r.Int();
            if (gpuCount < -1 || gpuCount > 4096 || cpus < 1 || lane < 0)
            {
                throw new ProtocolException("bad task fields");
            }

            string[]? gpus = gpuCount < 0 ? null : new string[gpuCount];
            for (var g = 0; g < gpuCount; g++)
            {
                gpus![g] = r.String();
            }

            list.Add(new LaunchRequest(task, id, attempt, r.Bytes(), lane, cpus, gpus));
        }

        r.End();
        return list;
    }
}

/// <summary>A signal for a task's process group.</summary>
public static class SignalMessage
{
    public static ReadOnlyMemory<byte> Encode(int task, int signal) => new PayloadWriter().Int(task).Int(signal).Written;

    public static (int Task, int Signal) Decode(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var m = (r.Int(), r.Int());
        r.End();
        return m;
    }
}

/// <summary>Ended attempts, batched.</summary>
public static class ExitsMessage
{
    public static ReadOnlyMemory<byte> Encode(IReadOnlyList<TaskExit> exits)
    {
        var w = new PayloadWriter().Int(exits.Count);
        foreach (var e in exits)
        {
            w.Int(e.Task).Int(e.Attempt).Int(e.ExitCode).Int(e.Signal).Long(e.StartUnixMs).Long(e.DurationMs).Int(e.Lane)
                .Long(e.OutOffset).Long(e.OutLength).Long(e.ErrOffset).Long(e.ErrLength)
                .Int((e.SpawnFailed ? 1 : 0) | (e.Signalled ? 2 : 0)).Int(e.Log);
        }

        return w.Written;
    }

    public static List<TaskExit> Decode(byte[] payload, int worker)
    {
        var r = new PayloadReader(payload);
        var n = r.Int();
        if (n < 0 || n > payload.Length)
        {
            throw new ProtocolException("bad exit count");
        }

        var list = new List<TaskExit>(n);
        for (var i = 0; i < n; i++)
        {
            var (task, attempt, code, signal, start, duration, lane) = (r.Int(), r.Int(), r.Int(), r.Int(), r.Long(), r.Long(), r.Int());
            var (outOffset, outLength, errOffset, errLength, flags, log) = (r.Long(), r.Long(), r.Long(), r.Long(), r.Int(), r.Int());
            list.Add(new TaskExit(task, attempt, code, signal, start, duration, lane, outOffset, outLength, errOffset, errLength, worker, (flags & 1) != 0, log, (flags & 2) != 0));
        }

        r.End();
        return list;
    }
}
