using System.CommandLine;
using Shoal.Cli;
using Shoal.Execution;

ChildProcess.TakeOverChildren();

var root = new RootCommand("Shoal: run many short tasks on the cores and GPUs you have — a workstation or a SLURM allocation — with one journal that makes every run resumable.");
root.Subcommands.Add(RunCommand.Create());
root.Subcommands.Add(SubmitCommand.Create());
root.Subcommands.Add(CatCommand.Create());
root.Subcommands.Add(StatusCommand.Create());
root.Subcommands.Add(NodesCommand.Create());
root.Subcommands.Add(ListCommand.Create());
root.Subcommands.Add(ReportCommand.Create());
root.Subcommands.Add(WorkerCommand.Create());
return await Cli.InvokeAsync(root, args).ConfigureAwait(false);
