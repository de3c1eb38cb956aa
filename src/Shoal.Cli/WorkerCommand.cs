using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Shoal.Cluster;
using Shoal.Execution;

namespace Shoal.Cli;

/// <summary><c>shoal worker</c>: what the leader's srun step starts on every node. Not for people to run by hand.</summary>
internal static class WorkerCommand
{
    private static readonly TimeSpan SecretTimeout = TimeSpan.FromSeconds(30);
    private static readonly Option<string> Leader = new("--leader") { Description = "HOST:PORT of the leader", Required = true };

    public static Command Create()
    {
        var command = new Command("worker", "Run tasks for a leader (started by 'shoal run' inside a SLURM allocation, one per node)") { Leader };
        command.Hidden = true;
        command.SetAction((parse, cancellationToken) => ExecuteAsync(parse, cancellationToken));
        return command;
    }

    private static async Task<int> ExecuteAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        var leader = parse.GetValue(Leader)!;
        var colon = leader.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(leader.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            return Cli.Fail($"--leader '{leader}': expected HOST:PORT");
        }

        // Before the secret is in memory: other processes of this user (our tasks) must not be able to read it there.
        RunSecret.ProtectProcess();

        // The secret comes as one line on stdin (never in an environment, which tasks could read in /proc); srun
        // delivers it at once, so a stdin that stays silent is not our step's.
        var reading = Task.Run(() => RunSecret.ReadLine(Console.OpenStandardInput()), CancellationToken.None);
        byte[]? secret;
        try
        {
            secret = await reading.WaitAsync(SecretTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            secret = null;
        }

        if (secret is null)
        {
            return Cli.Fail("no run secret on stdin; 'shoal worker' is started by 'shoal run', not by hand");
        }

        var env = (Func<string, string?>)Environment.GetEnvironmentVariable;
        var node = LocalMachine.NodeName(env);
        PoolThreads.Reserve(PoolThreads.ForRun); // before any task can use up the process limit

        // At the time limit SLURM signals every process of the job at once. The leader runs the stop (TERM, grace,
        // KILL, then it records every end and shuts the workers down), so a worker stays to report its tasks' ends;
        // if the leader is gone, the worker kills its tasks and exits anyway.
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => c.Cancel = true);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true);
        return await WorkerAgent.RunAsync(
            leader[..colon],
            port,
            secret,
            node,
            LocalMachine.Slots(env),
            LocalMachine.Gpus(env),
            message => Console.Error.WriteLine($"shoal worker {node}: {message}"),
            cancellationToken).ConfigureAwait(false);
    }
}
