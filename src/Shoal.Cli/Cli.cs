using System.CommandLine;
using Shoal.Journal;
using Shoal.Tasks;

namespace Shoal.Cli;

/// <summary>Exit codes and error reporting shared by every verb: bad input prints one clear line and exits 2.</summary>
internal static class Cli
{
    public const int Ok = 0;
    public const int SomeFailed = 1;
    public const int BadInput = 2;

    public static async Task<int> InvokeAsync(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"shoal: {error.Message}").ConfigureAwait(false);
            }

            await Console.Error.WriteLineAsync("Try 'shoal --help'.").ConfigureAwait(false);
            return BadInput;
        }

        // ProcessTerminationTimeout = null: System.CommandLine would otherwise take SIGINT/SIGTERM and return from Main
        // after 2 s, in the middle of a run's stop. `run` handles both signals itself (grace, KILL, journal, summary).
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null }).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TaskInputException or JournalException)
        {
            await Console.Error.WriteLineAsync($"shoal: error: {e.Message}").ConfigureAwait(false);
            return BadInput;
        }
    }

    /// <summary>An I/O error as a user reads it: "no such file" rather than an exception type.</summary>
    public static string Describe(Exception e) => e switch
    {
        FileNotFoundException => "no such file",
        DirectoryNotFoundException => "no such directory",
        UnauthorizedAccessException => "permission denied",
        _ => e.Message,
    };

    public static int Fail(string message)
    {
        Console.Error.WriteLine($"shoal: error: {message}");
        return BadInput;
    }
}
