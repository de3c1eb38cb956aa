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

/// <summary>The leader's answer: who the worker is and where its output goes.</summary>
public sealed record WelcomeMessage(int WorkerId, string LogDirectory, string LogPrefix, string Shell, string RunDir)
{
    public ReadOnlyMemory<byte> Encode() =>
        new PayloadWriter().Int(WorkerId).String(LogDirectory).String(LogPrefix).String(Shell).String(RunDir).Written;

    public static WelcomeMessage Decode(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var m = new WelcomeMessage(r.Int(), r.String(), r.String(), r.String(), r.String());
        r.End();
        return m;
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
