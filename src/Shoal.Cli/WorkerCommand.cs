using System.CommandLine;
using System.Globalization;
using Shoal.Cluster;

namespace Shoal.Cli;

/// <summary><c>shoal worker</c>: what the leader's srun step starts on every node. Not for people to run by hand.</summary>
internal static class WorkerCommand
{
    public const string SecretVariable = "SHOAL_SECRET";
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

        // The secret comes through the environment of our own step; tasks must not inherit it.
        var secretText = Environment.GetEnvironmentVariable(SecretVariable);
        Environment.SetEnvironmentVariable(SecretVariable, null);
        byte[] secret;
        try
        {
            secret = Convert.FromBase64String(secretText ?? "");
        }
        catch (FormatException)
        {
            secret = [];
        }

        if (secret.Length < 16)
        {
            return Cli.Fail($"{SecretVariable} is missing or malformed; 'shoal worker' is started by 'shoal run', not by hand");
        }

        var env = (Func<string, string?>)Environment.GetEnvironmentVariable;
        var node = Environment.MachineName;
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
